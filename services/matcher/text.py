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
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import Stemmer

from newswatch.shared.languages import SNOWBALL

#: A word: letters and digits, with inner apostrophes (shared by documents, queries and the bench).
WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
#: The same words as a split: [separator, word, separator, ..., separator], so one C call
#: gives a document both its words and (by summing lengths) their character offsets.
SPLIT = re.compile(f"({WORD.pattern})", re.UNICODE)
#: ``str.lower`` as CPython does it, for the modules mypyc compiles: mypyc turns ``s.lower()``
#: into its own loop over characters, which lower-cases a word-final capital sigma to ``σ``
#: where CPython gives ``ς`` (``ΑΓΩΝΑΣ`` → ``αγωνασ``, not ``αγωνας``). Queries and the word
#: cache are lower-cased by CPython, so a compiled module calls this (mypyc cannot see
#: through it) and both sides agree; ``s.lower()`` is fine in uncompiled modules.
lower: Callable[[str], str] = str.lower
#: Wildcard prefixes are indexed by their first three letters (``p:dep`` for ``deploy*``).
PREFIX_KEY = 3
#: Words a thread's lexicons hold, all languages together, before they start afresh: about
#: 470 bytes each with their forms and spellings (measured), so at most about 24 MB. 9,825
#: real English news items had 33,485 distinct words; items in several languages need a
#: word once per language.
LEXICON_WORDS = 50_000
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


@lru_cache(maxsize=1024)
def algorithm_for(language: str) -> str:
    """The Snowball algorithm for an item language such as ``en-GB`` (English if unknown)."""
    return SNOWBALL.get(language.split("-", 1)[0].strip().lower(), "english")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in WORD.finditer(text)]


def _split_words_py(text: str) -> tuple[list[str], Sequence[int]]:
    """``split_words`` on the regex itself: the reference, and the fallback without C."""
    parts = SPLIT.split(text)
    return parts[1::2], list(accumulate(map(len, parts)))


#: ``split_words(text)``: the words ``WORD`` finds in ``text`` and their offsets, flat (word i
#: is ``text[o[2i]:o[2i + 1]]``); in C when built, else on the regex; the same either way (tests).
split_words: Callable[[str], tuple[list[str], Sequence[int]]]
try:
    from newswatch.matcher import _words
except ImportError:  # not built: no compiler at install, or NEWSWATCH_PURE_PYTHON=1
    WORDS_IN_C = False
    split_words = _split_words_py
else:
    WORDS_IN_C = True
    split_words = _words.split_words  # the regex was half of building a Document


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


def doc_forms(word: str, algorithm: str = "english") -> frozenset[str]:
    """The comparable forms of a document word: its lower-case spelling, that spelling
    normalized (``Korea's`` → ``korea``), its stem and demonym bases."""
    lowered = word.lower()
    return frozenset({lowered, *_forms(_normal(lowered), algorithm)})


class Lexicon(dict[str, frozenset[str]]):
    """Lower-case word → its keys in one language: ``doc_forms`` and its presearch prefix key.

    The keys are a frozenset, not a tuple, though it weighs more: a document's key set is
    the union of its words' sets, which copies the hashes the frozensets hold, where a tuple
    would make it read every key string (each a cache miss: the cache holds tens of
    thousands of words, so their strings are rarely in the CPU's cache).

    The matcher's word cache: a document looks every word up here (one C-level ``map``), so
    stemming happens once per distinct word, not once per occurrence. ``spellings`` is the
    reverse (form → the words that have it), so a document finds where a query word occurs
    by searching for those spellings instead of testing each of its words.

    Bounded: ``lexicon_for`` starts every lexicon of a thread afresh once together they hold
    ``LEXICON_WORDS`` words (the words of the current news come back within a few items), so
    neither a drifting vocabulary nor many languages can grow memory; a document keeps the
    Lexicon it was built with.
    """

    def __init__(self, algorithm: str) -> None:
        super().__init__()
        self.algorithm = algorithm
        self.spellings: dict[str, tuple[str, ...]] = {}

    def clear(self) -> None:
        super().clear()
        self.spellings.clear()  # never one without the other

    def __missing__(self, lowered: str) -> frozenset[str]:
        forms = doc_forms(lowered, self.algorithm)
        spellings = self.spellings
        for form in forms:  # a tuple: most forms have one or two spellings, and a set costs 216 bytes
            spellings[form] = (*spellings.get(form, ()), lowered)
        keys = self[lowered] = forms | {"p:" + lowered[:PREFIX_KEY]}  # shorter: a key no topic has
        return keys


class _Lexicons:
    """One thread's lexicons, one per algorithm, and the bound on the words they hold together."""

    def __init__(self, limit: int = LEXICON_WORDS) -> None:
        self.current: dict[str, Lexicon] = {}
        self.limit = limit

    @property
    def words(self) -> int:
        return sum(map(len, self.current.values()))  # a few languages: cheaper than counting


_lexicons_of_threads: weakref.WeakSet[_Lexicons] = weakref.WeakSet()  # gone with their thread
_lexicons_lock = threading.Lock()
_resets = [0]  # fresh starts in any thread, ever: monotonic, unlike a sum over live threads


def _thread_lexicons() -> _Lexicons:
    mine: _Lexicons | None = getattr(_local, "lexicons", None)
    if mine is None:
        mine = _local.lexicons = _Lexicons()
        with _lexicons_lock:
            _lexicons_of_threads.add(mine)
    return mine


def lexicon_for(algorithm: str) -> Lexicon:
    """This thread's Lexicon for ``algorithm`` (PyStemmer stemmers are not thread-safe); a
    new one once it is full. Called once per document, so no document straddles two."""
    mine = _thread_lexicons()
    if mine.words >= mine.limit:
        mine.current = {}
        with _lexicons_lock:
            _resets[0] += 1
    lexicon = mine.current.get(algorithm)
    if lexicon is None:
        lexicon = mine.current[algorithm] = Lexicon(algorithm)
    return lexicon


def lexicon_resets() -> int:
    """How often a Lexicon was started afresh because it was full, in any thread (a metric)."""
    return _resets[0]


def lexicon_words() -> int:
    """Words held in every thread's lexicons, once per language (a metric)."""
    with _lexicons_lock:
        return sum(lexicons.words for lexicons in _lexicons_of_threads)


@lru_cache(maxsize=200_000)
def query_forms(word: str, algorithms: tuple[str, ...] = ("english",)) -> frozenset[str]:
    """The forms of a query word: its forms under each language's stemmer."""
    lowered = _normal(word)
    forms: set[str] = set()
    for algorithm in algorithms:
        forms |= _forms(lowered, algorithm)
    return frozenset(forms)
