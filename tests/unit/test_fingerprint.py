"""The notifier's SimHash gives the fingerprints the ``simhash`` package gave (the values below
and the corpus digest were computed with simhash 2.1.2): fingerprints stored by earlier
releases keep matching new items of the same story."""

from __future__ import annotations

import csv
import hashlib

import pytest

from newswatch.notifier.fingerprint import _WORD, simhash64
from tests.support.corpus import corpus_dir


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("North Korean troops deployed to Ukraine front, officials say", 0x608DCD12F68DC8F2),
        ("Ünïcödé 東京 Straße", 0x099A58B2142CD338),
        ("a a a b", 0x31C399E269772661),  # repeated words count each time
        ("x", 0xF5C8564E155C67A6),
    ],
)
def test_known_fingerprints(text: str, expected: int) -> None:
    assert simhash64(_WORD.findall(text.lower())) == expected


def test_an_item_without_words_is_fingerprinted_by_its_id() -> None:
    assert simhash64(["item-1"]) == 0xFDF291A1A70DF20C


def test_the_whole_ag_news_test_set_fingerprints_as_before() -> None:
    """7,600 real news items: the SHA-256 of their fingerprints, in order, as simhash made them."""
    path = corpus_dir("news", "ag-news-test", "ag_news_csv") / "test.csv"
    digest = hashlib.sha256()
    with path.open(newline="", encoding="utf-8") as rows:
        for _label, title, summary in csv.reader(rows):
            words = _WORD.findall(f"{title} {summary}".lower()) or ["id"]
            digest.update(simhash64(words).to_bytes(8, "big"))
    assert digest.hexdigest() == "e990335bcbb49eb38b4d19b953c68367f02ad3c649ef50b54a2853e01e305878"
