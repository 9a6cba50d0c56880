"""Topic queries. This version supports plain words: every word must occur (AND).

Operators, phrases, proximity and fields are reserved syntax: a query that uses them is
refused with the position, instead of being silently read as plain words (which would
match something else than the user meant).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newswatch.matcher.errors import QueryError
from newswatch.matcher.text import tokenize, word_forms

_RESERVED_CHARS = re.compile(r"[\"()*:\[\]{}^~]")
_RESERVED_WORDS = frozenset({"AND", "OR", "NOT"})
_NEAR = re.compile(r"^O?NEAR/\d+$")


@dataclass(frozen=True)
class Term:
    """One query word and the forms any of which satisfies it."""

    text: str
    forms: frozenset[str]


@dataclass(frozen=True)
class Query:
    source: str
    terms: tuple[Term, ...]


def compile_query(source: str) -> Query:
    """Parse ``source`` into a Query or raise QueryError."""
    reserved = _RESERVED_CHARS.search(source)
    if reserved:
        raise QueryError(
            source,
            reserved.start(),
            f"{reserved.group(0)!r} is query syntax this version does not support; use plain words",
        )
    terms: list[Term] = []
    for match in re.finditer(r"\S+", source):
        raw = match.group(0)
        if raw in _RESERVED_WORDS or _NEAR.match(raw):
            raise QueryError(
                source, match.start(), f"operator {raw} is not supported in this version; use plain words"
            )
        if raw.startswith("-") and len(raw) > 1:
            raise QueryError(source, match.start(), "negation (-word) is not supported in this version")
        for token in tokenize(raw):
            term = Term(token.text, word_forms(token.text))
            if term not in terms:
                terms.append(term)
    if not terms:
        raise QueryError(source, 0, "expected at least one word")
    return Query(" ".join(source.split()), tuple(terms))
