"""Tokenizing and stemming (pure; shared by queries and documents so both sides agree).

A document word is reduced to its Snowball stem in the item's language (English when the
language is unknown or has no stemmer), so ``deployment`` and ``deployed`` meet at
``deploy``. A query word does not know the language of the items it will meet, so it
carries its stems in every configured language. Country names and their adjectives
(``Korea``/``Korean``, ``Ukraine``/``Ukrainian``) are not joined by Snowball, so an English
stem also yields its base with a nationality suffix removed. Two words match when their
sets of forms intersect.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

from newswatch.shared.languages import SNOWBALL

#: A word: letters and digits, with inner apostrophes (shared by documents, queries and the bench).
WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
#: Suffixes that turn a place name into its adjective/demonym, longest first.
_DEMONYM_SUFFIXES = ("ian", "ean", "ese", "an", "n", "i")
_MIN_BASE = 4
_local = threading.local()


def _stemmer(algorithm: str) -> Stemmer.Stemmer:
    stemmers: dict[str, Stemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    stemmer = stemmers.get(algorithm)
    if stemmer is None:
        stemmer = stemmers[algorithm] = Stemmer.Stemmer(algorithm)
    return stemmer


def algorithm_for(language: str) -> str:
    """The Snowball algorithm for an item language such as ``en-GB`` (English if unknown)."""
    return SNOWBALL.get(language.split("-", 1)[0].strip().lower(), "english")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def spans(text: str) -> list[tuple[str, int, int]]:
    """Words of ``text`` with their character offsets (the fast path of ``tokenize``)."""
    return [(m.group(0), m.start(), m.end()) for m in WORD.finditer(text)]


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in WORD.finditer(text)]


def _normal(word: str) -> str:
    lowered = word.lower().replace("’", "'")
    return lowered[:-2] if lowered.endswith("'s") else lowered


def _forms(lowered: str, algorithm: str) -> set[str]:
    stem = str(_stemmer(algorithm).stemWord(lowered))
    forms = {lowered, stem}
    if algorithm == "english":
        for suffix in _DEMONYM_SUFFIXES:
            if stem.endswith(suffix) and len(stem) - len(suffix) >= _MIN_BASE:
                forms.add(stem[: -len(suffix)])
    # "Ukraine" stems to "ukrain"; "Ukrainian" loses "ian" → "ukrain" as well.
    return forms


@lru_cache(maxsize=500_000)
def doc_forms(word: str, algorithm: str = "english") -> frozenset[str]:
    """The comparable forms of a document word: itself (lower-case), its stem, demonym bases."""
    return frozenset(_forms(_normal(word), algorithm))


@lru_cache(maxsize=200_000)
def query_forms(word: str, algorithms: tuple[str, ...] = ("english",)) -> frozenset[str]:
    """The forms of a query word: its forms under each language's stemmer."""
    lowered = _normal(word)
    forms: set[str] = set()
    for algorithm in algorithms:
        forms |= _forms(lowered, algorithm)
    return frozenset(forms)
