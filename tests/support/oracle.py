"""A brute-force evaluator of query trees: the tests' reference for the matcher.

Written from the README's description of the query language, for clarity and not for speed,
and sharing nothing with ``newswatch.matcher.evaluate`` or ``document`` but the definition of
a word (``WORD``) and of its forms (``doc_forms`` / ``query_forms``: stemming is not what is
under test). An item is a list of tokens per field; every node is tested by walking them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from newswatch.matcher.syntax import Alias, And, Near, Node, Not, Or, Phrase, Prefix, Word
from newswatch.matcher.text import WORD, algorithm_for, doc_forms, query_forms

FIELDS = ("title", "text", "source", "author")
IN_SCOPE = {None: ("title", "text"), "title": ("title",), "text": ("text",), "source": ("source",),
            "author": ("author",)}  # fmt: skip


@dataclass(frozen=True)
class Token:
    lowered: str  # as written, lower-case
    forms: frozenset[str]


@dataclass(frozen=True)
class Item:
    fields: dict[str, list[Token]]
    language: str


def item(title: str, text: str = "", language: str = "en", source: str = "", author: str = "") -> Item:
    algorithm = algorithm_for(language)
    values = dict(zip(FIELDS, (title, text, source, author), strict=True))
    return Item(
        {f: [Token(w.lower(), doc_forms(w, algorithm)) for w in WORD.findall(v)] for f, v in values.items()},
        language.lower(),
    )


Span = tuple[str, int, int]  # field, first and last token


def matches(node: Node, it: Item, algorithms: tuple[str, ...]) -> bool:
    if isinstance(node, Not):
        return not matches(node.child, it, algorithms)
    if isinstance(node, And):
        return all(matches(c, it, algorithms) for c in node.children)
    if isinstance(node, Or):
        return any(matches(c, it, algorithms) for c in node.children)
    if isinstance(node, Word) and node.field == "lang":
        wanted = node.text.lower()
        return it.language == wanted or it.language.startswith(wanted + "-")
    return bool(spans(node, it, algorithms))


def spans(node: Node, it: Item, algorithms: tuple[str, ...]) -> set[Span]:
    """Where a positional node (word, wildcard, phrase, alias, OR or NEAR of those) occurs."""
    if isinstance(node, Or):
        return set().union(*(spans(c, it, algorithms) for c in node.children))
    if isinstance(node, Near):
        found: set[Span] = set()
        for lf, ls, le in spans(node.left, it, algorithms):
            for rf, rs, re_ in spans(node.right, it, algorithms):
                if lf != rf:
                    continue
                after = le < rs and rs - le <= node.distance
                before = re_ < ls and ls - re_ <= node.distance
                if after or (before and not node.ordered):
                    found.add((lf, min(ls, rs), max(le, re_)))
        return found
    if isinstance(node, Word):
        forms = query_forms(node.text, algorithms)
        return _runs(it, node.field, 1, lambda t, _i: not forms.isdisjoint(t.forms))
    if isinstance(node, Prefix):
        prefix = node.text.lower()
        return _runs(it, node.field, 1, lambda t, _i: t.lowered.startswith(prefix))
    if isinstance(node, Phrase):
        words = [w.lower() for w in node.words]
        return _runs(it, node.field, len(words), lambda t, i: t.lowered == words[i])
    if isinstance(node, Alias):
        return set().union(*(_alias_runs(it, node.field, name, algorithms) for name in node.names))
    raise TypeError(f"not positional: {node!r}")


def _alias_runs(it: Item, field: str | None, name: tuple[str, ...], algorithms: tuple[str, ...]) -> set[Span]:
    named = [query_forms(w, algorithms) for w in name]
    return _runs(it, field, len(named), lambda t, i: not named[i].isdisjoint(t.forms))


def _runs(it: Item, field: str | None, width: int, fits: Callable[[Token, int], bool]) -> set[Span]:
    """Runs of ``width`` adjacent tokens of one field in scope, token i satisfying fits(t, i)."""
    found: set[Span] = set()
    for name in IN_SCOPE[field]:
        tokens = it.fields[name]
        for start in range(len(tokens) - width + 1):
            if all(fits(tokens[start + i], i) for i in range(width)):
                found.add((name, start, start + width - 1))
    return found
