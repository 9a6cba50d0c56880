"""Tokenizing and stemming (pure; shared by queries and documents so both sides agree).

A word is reduced to its Snowball (English) stem, so ``deployment`` and ``deployed`` meet
at ``deploy``. Country names and their adjectives (``Korea``/``Korean``,
``Ukraine``/``Ukrainian``) are not joined by Snowball, so each word also yields its stem
with a nationality suffix removed; two words match when their forms intersect.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
#: Suffixes that turn a place name into its adjective/demonym, longest first.
_DEMONYM_SUFFIXES = ("ian", "ean", "ese", "an", "n", "i")
_MIN_BASE = 4
_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]


@lru_cache(maxsize=200_000)
def word_forms(word: str) -> frozenset[str]:
    """The comparable forms of one word: its stem plus demonym-stripped bases."""
    lowered = word.lower().replace("’", "'")
    if lowered.endswith("'s"):
        lowered = lowered[:-2]
    stem = str(_stemmer().stemWord(lowered))
    forms = {stem}
    for suffix in _DEMONYM_SUFFIXES:
        if stem.endswith(suffix) and len(stem) - len(suffix) >= _MIN_BASE:
            forms.add(stem[: -len(suffix)])
    # "Ukraine" stems to "ukrain"; "Ukrainian" loses "ian" → "ukrain" as well.
    return frozenset(forms)
