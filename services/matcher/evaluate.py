"""Evaluating compiled queries against an item (pure), with the reason for a match."""

from __future__ import annotations

import re
from dataclasses import dataclass

from newswatch.matcher.query import Query
from newswatch.matcher.text import tokenize, word_forms
from newswatch.shared.contract import Item, MatchReason

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SNIPPET_MAX = 300


@dataclass(frozen=True)
class Document:
    """An item prepared once for evaluation against every topic."""

    title: str
    text: str
    form_words: dict[str, tuple[str, ...]]  # form → surface words that produce it

    @classmethod
    def from_item(cls, item: Item) -> Document:
        index: dict[str, list[str]] = {}
        for field in (item.title, item.summary):
            for token in tokenize(field):
                for form in word_forms(token.text):
                    words = index.setdefault(form, [])
                    if token.text not in words:
                        words.append(token.text)
        return cls(item.title, item.summary, {k: tuple(v) for k, v in index.items()})


def evaluate(query: Query, doc: Document) -> MatchReason | None:
    """All query words present (in title or text) → the reason; else None."""
    found: dict[str, list[str]] = {}
    for term in query.terms:
        hits: list[str] = []
        for form in term.forms:
            for word in doc.form_words.get(form, ()):
                if word not in hits:
                    hits.append(word)
        if not hits:
            return None
        found[term.text] = hits
    return MatchReason(terms=found, snippet=best_snippet(doc, found))


def best_snippet(doc: Document, found: dict[str, list[str]]) -> str:
    """The sentence containing the most distinct matched words (the title if it ties)."""
    matched = {w.lower() for words in found.values() for w in words}
    best, best_score = doc.title, _score(doc.title, matched)
    for sentence in _SENTENCE_END.split(doc.text):
        score = _score(sentence, matched)
        if score > best_score:
            best, best_score = sentence, score
    best = best.strip()
    return best if len(best) <= _SNIPPET_MAX else best[: _SNIPPET_MAX - 1].rstrip() + "…"


def _score(sentence: str, matched: set[str]) -> int:
    return len({t.text.lower() for t in tokenize(sentence)} & matched)
