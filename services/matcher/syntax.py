"""The topic query language's syntax tree, and its canonical printed form.

Parsing (``parser``) turns text into these nodes; ``to_text`` prints a node back so that
parsing the printed text gives the same tree (tested as a property). Nodes are plain frozen
dataclasses: equality is structural, which the tests and the topic set rely on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

#: Field scopes a term may carry. None means title or text.
FIELDS = ("title", "text", "source", "lang", "author")


@dataclass(frozen=True)
class Word:
    """A word, stemmed when matched (``deployment`` meets ``deployed``)."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Prefix:
    """``deploy*``: any word starting with ``text`` (not stemmed)."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Phrase:
    """``"north korea"``: these words, adjacent and in order, exactly as written (not stemmed)."""

    words: tuple[str, ...]
    field: str | None = None


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Near:
    """``a NEAR/n b`` (either order) or ``a ONEAR/n b`` (a before b): at most n words apart."""

    left: Node
    right: Node
    distance: int
    ordered: bool = False


@dataclass(frozen=True)
class Alias:
    """An entity written in the query, standing for every name of its alias set.

    ``name`` is how the query wrote it; ``names`` are the alternatives (each a word tuple),
    any of which matches, stemmed like plain words and adjacent like a phrase.
    """

    name: tuple[str, ...]
    names: tuple[tuple[str, ...], ...]
    field: str | None = None


Node = Word | Prefix | Phrase | Not | And | Or | Near | Alias


def _scoped(field: str | None, text: str) -> str:
    return f"{field}:{text}" if field else text


def _quote(words: tuple[str, ...]) -> str:
    return '"' + " ".join(words) + '"'


def to_text(node: Node) -> str:
    """The canonical text of ``node``: fully parenthesized where precedence would matter."""
    if isinstance(node, Word):
        return _scoped(node.field, node.text)
    if isinstance(node, Prefix):
        return _scoped(node.field, node.text + "*")
    if isinstance(node, Phrase):
        return _scoped(node.field, _quote(node.words))
    if isinstance(node, Alias):
        # Printed as written; re-parsing with the same alias table finds the same set.
        text = " ".join(node.name)
        return _scoped(node.field, f"({text})" if len(node.name) > 1 else text)
    if isinstance(node, Not):
        return f"NOT {_group(node.child)}"
    if isinstance(node, And):
        return " AND ".join(_group(c) for c in node.children)
    if isinstance(node, Or):
        return " OR ".join(_group(c) for c in node.children)
    operator = f"{'ONEAR' if node.ordered else 'NEAR'}/{node.distance}"
    return f"{_group(node.left)} {operator} {_group(node.right)}"


def _group(node: Node) -> str:
    if isinstance(node, And | Or | Near):
        return f"({to_text(node)})"
    return to_text(node)


@functools.lru_cache(maxsize=100_000)
def label(node: Node) -> str:
    """How a term is named in a match's reason: as printed, an alias without its group.

    Cached: evaluation names every matched term of every candidate topic.
    """
    if isinstance(node, Alias):
        return _scoped(node.field, " ".join(node.name))
    return to_text(node)


def leaves(node: Node) -> list[Node]:
    """The positive terms of ``node`` (under no NOT), left to right: what a match can show."""
    if isinstance(node, And | Or):
        return [leaf for child in node.children for leaf in leaves(child)]
    if isinstance(node, Near):
        return leaves(node.left) + leaves(node.right)
    if isinstance(node, Not):
        return []
    return [node]
