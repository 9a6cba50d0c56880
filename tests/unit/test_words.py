"""The word splitter: the C one (``_words``) and its Python twin give the regex's words and
their offsets, on any text."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newswatch.matcher import text
from newswatch.matcher.text import WORD
from tests.support.native import c_module

Split = Callable[[str], tuple[list[str], Sequence[int]]]


def _c_split() -> Split:
    split: Split = c_module("_words", "the regex").split_words
    return split


@pytest.fixture(params=["python", "c"])
def split(request: pytest.FixtureRequest) -> Split:
    return text._split_words_py if request.param == "python" else _c_split()


def spans(value: str) -> tuple[list[str], list[int]]:
    """The reference: the regex's matches and their spans, flat."""
    found = list(WORD.finditer(value))
    return [m.group() for m in found], [i for m in found for i in m.span()]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "North Korea's troops",
        "rock'n'roll isn't ’quoted’ o’clock",
        "trailing' 'leading ''double'' a''b",
        "snake_case __init__ 3.14 1,000",
        "Ελλάδα ΑΓΩΝΑΣ КНДР 北朝鮮 한국",
        "e\u0301cole caf\u00e9 na\u00efve",  # a combining mark is not a word character
        "tab\tnew\nline\u00a0nbsp\u2003em",
        "emoji 🙂 between",
    ],
)
def test_the_words_and_offsets_are_the_regexs(split: Split, value: str) -> None:
    words, offsets = split(value)
    want_words, want_spans = spans(value)
    assert words == want_words
    assert list(offsets[: len(want_spans)]) == want_spans


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="ab _'’.\u0301İΣ1", max_size=40))
def test_any_text_splits_as_the_regex_does(value: str) -> None:
    want_words, want_spans = spans(value)
    for split in (text._split_words_py, *([text.split_words] if text.WORDS_IN_C else [])):
        words, offsets = split(value)
        assert words == want_words
        assert list(offsets[: len(want_spans)]) == want_spans


def test_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match="takes a str, not bytes"):
        _c_split()(b"bytes")  # type: ignore[arg-type]
