"""Evaluating a query tree against a Document, with the reason for a match (pure).

Each node yields either no match or a ``Hit``: the spans where it matched (used by NEAR)
and, per query term, the words of the item that satisfied it (the "why"). The reason
carries those terms, the best sentence with the hits highlighted, and a score.
"""

from __future__ import annotations

import bisect
import functools

from newswatch.matcher.document import FIELD_IDS, FIELD_SPAN, TEXT, TITLE, Document
from newswatch.matcher.syntax import (
    Alias,
    And,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Word,
    label,
    leaves,
)
from newswatch.matcher.text import query_forms
from newswatch.shared.contract import MatchReason

_SNIPPET_MAX = 300

Span = tuple[int, int]  # first and last position (inclusive)


class Hit:
    """Where a node matched: spans (for NEAR) and, per term, positions of the matching words."""

    __slots__ = ("spans", "terms")

    def __init__(self, spans: list[Span] | None = None, terms: dict[str, set[int]] | None = None) -> None:
        self.spans: list[Span] = spans if spans is not None else []
        self.terms: dict[str, set[int]] = terms if terms is not None else {}


@functools.lru_cache(maxsize=200_000)
def _word_plan(node: Word, algorithms: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...], str]:
    """What evaluating a word needs, worked out once: its forms, its fields, its label."""
    return tuple(query_forms(node.text, algorithms)), FIELD_IDS[node.field], label(node)


def match(node: Node, doc: Document, algorithms: tuple[str, ...]) -> Hit | None:
    """The hit of ``node`` in ``doc``, or None."""
    if isinstance(node, Word):
        if node.field == "lang":
            wanted = node.text.lower()
            ok = doc.language == wanted or doc.language.startswith(wanted + "-")
            return Hit([], {label(node): set()}) if ok else None
        forms, fields, name = _word_plan(node, algorithms)
        get = doc.forms.get
        found: set[int] = set()
        for form in forms:
            positions = get(form)
            if positions:
                found.update(p for p in positions if p // FIELD_SPAN in fields)
        if not found:
            return None
        return Hit([(p, p) for p in sorted(found)], {name: found})
    if isinstance(node, Prefix):
        prefix = node.text.lower()
        fields = FIELD_IDS[node.field]
        hits = sorted(
            p
            for word, positions in doc.words.items()
            if word.startswith(prefix)
            for p in positions
            if p // FIELD_SPAN in fields
        )
        return _leaf(node, [(p, p) for p in hits])
    if isinstance(node, Phrase):
        return _leaf(node, _sequence(doc, [_exact(doc, w) for w in node.words], node.field))
    if isinstance(node, Alias):
        spans: list[Span] = []
        for alternative in node.names:
            words = [_stemmed(doc, query_forms(w, algorithms)) for w in alternative]
            spans += _sequence(doc, words, node.field)
        return _leaf(node, sorted(set(spans)))
    if isinstance(node, Not):
        return None if match(node.child, doc, algorithms) is not None else Hit()
    if isinstance(node, And):
        total = Hit()
        for child in node.children:
            hit = match(child, doc, algorithms)
            if hit is None:
                return None
            _merge(total, hit)
        return total
    if isinstance(node, Or):
        total = Hit()
        matched = False
        for child in node.children:
            hit = match(child, doc, algorithms)
            if hit is not None:
                matched = True
                total.spans += hit.spans
                _merge(total, hit)
        return total if matched else None
    return _near(node, doc, algorithms)


def _near(node: Near, doc: Document, algorithms: tuple[str, ...]) -> Hit | None:
    left = match(node.left, doc, algorithms)
    right = match(node.right, doc, algorithms) if left is not None else None
    if left is None or right is None:
        return None
    spans = []
    for ls, le in left.spans:
        for rs, re_ in right.spans:
            if ls // FIELD_SPAN != rs // FIELD_SPAN:
                continue
            if node.ordered:
                close = le < rs and rs - le <= node.distance
            else:
                close = (le < rs and rs - le <= node.distance) or (re_ < ls and ls - re_ <= node.distance)
            if close:
                spans.append((min(ls, rs), max(le, re_)))
    if not spans:
        return None
    used = {p for s, e in spans for p in range(s, e + 1)}
    hit = Hit(sorted(set(spans)))
    for side in (left, right):
        for term, positions in side.terms.items():
            hit.terms.setdefault(term, set()).update(positions & used or positions)
    return hit


def _leaf(node: Node, spans: list[Span]) -> Hit | None:
    if not spans:
        return None
    return Hit(spans, {label(node): {p for s, e in spans for p in range(s, e + 1)}})


def _merge(total: Hit, hit: Hit) -> None:
    for term, positions in hit.terms.items():
        total.terms.setdefault(term, set()).update(positions)


def _stemmed(doc: Document, forms: frozenset[str], fields: tuple[int, ...] | None = None) -> set[int]:
    """Positions of words sharing a form with the query word (in ``fields``, if given)."""
    found: set[int] = set()
    for form in forms:
        for p in doc.forms.get(form, ()):
            if fields is None or p // FIELD_SPAN in fields:
                found.add(p)
    return found


def _exact(doc: Document, word: str) -> set[int]:
    return set(doc.words.get(word.lower(), ()))


def _sequence(doc: Document, positions: list[set[int]], field_name: str | None) -> list[Span]:
    """Spans where word i of a sequence is at position start + i (same field)."""
    fields = FIELD_IDS[field_name]
    length = len(positions)
    return [
        (start, start + length - 1)
        for start in sorted(positions[0])
        if start // FIELD_SPAN in fields
        and (start + length - 1) // FIELD_SPAN == start // FIELD_SPAN
        and all(start + i in positions[i] for i in range(1, length))
    ]


def explain(node: Node, doc: Document, algorithms: tuple[str, ...]) -> MatchReason | None:
    """The reason ``node`` matches ``doc`` (terms, highlighted sentence, score), or None."""
    hit = match(node, doc, algorithms)
    if hit is None:
        return None
    surface = doc.surface
    terms = {
        term: list(dict.fromkeys(surface[p // FIELD_SPAN][p % FIELD_SPAN] for p in sorted(positions)))
        for term, positions in hit.terms.items()
    }
    hit_positions = {p for positions in hit.terms.values() for p in positions}
    snippet, highlights = best_snippet(doc, hit_positions)
    # Built from our own values (a dict of lists, a string, spans, a bounded float): no need to
    # re-validate them; the contract validates again when the notifier decodes the match.
    return MatchReason.model_construct(
        terms=terms, snippet=snippet, highlights=highlights, score=score(node, hit)
    )


@functools.lru_cache(maxsize=100_000)
def _labels(node: Node) -> tuple[str, ...]:
    return tuple(label(leaf) for leaf in leaves(node))


def score(node: Node, hit: Hit) -> float:
    """0..1: the share of the query's terms found, a term in the title counting double."""
    labels = _labels(node)
    if not labels:
        return 0.5  # a query of NOTs only: it matched, nothing to weigh
    total = 0.0
    for name in labels:
        positions = hit.terms.get(name)
        if positions is None:
            continue
        in_title = not positions or min(positions) < FIELD_SPAN  # TITLE is field 0
        total += 1.0 if in_title else 0.5
    return round(min(1.0, total / len(labels)), 3)


def best_snippet(doc: Document, positions: set[int]) -> tuple[str, list[tuple[int, int]]]:
    """The title or text sentence holding the most hits, with the hits' character spans."""
    in_title = [p for p in positions if p < FIELD_SPAN]  # TITLE is field 0, TEXT field 1
    in_text = [p for p in positions if FIELD_SPAN <= p < 2 * FIELD_SPAN]
    field_id, start, end, hits = TITLE, 0, len(doc.title), in_title
    if in_text:
        sentences = doc.sentences
        starts = doc.sentence_starts
        offsets = doc.offsets[TEXT]
        by_sentence: dict[int, list[int]] = {}
        for p in in_text:
            index = bisect.bisect_right(starts, offsets[p - FIELD_SPAN][0]) - 1
            by_sentence.setdefault(index, []).append(p)
        best = max(by_sentence, key=lambda i: (len(by_sentence[i]), -i))
        if len(by_sentence[best]) > len(in_title):  # the title wins a tie
            field_id, hits = TEXT, by_sentence[best]
            start, end = sentences[best]
    source = doc.title if field_id == TITLE else doc.text
    sentence = source[start:end]
    stripped = sentence.lstrip()
    start += len(sentence) - len(stripped)
    snippet = stripped.rstrip()
    offsets = doc.offsets[field_id]
    limit = start + len(snippet)
    highlights = []
    for p in hits:
        s, e = offsets[p % FIELD_SPAN]
        if start <= s and e <= limit:
            highlights.append((s - start, e - start))
    highlights.sort()
    highlights = _joined(snippet, highlights)
    if len(snippet) > _SNIPPET_MAX:
        snippet = snippet[: _SNIPPET_MAX - 1].rstrip() + "…"
        highlights = [(s, e) for s, e in highlights if e <= len(snippet) - 1]
    return snippet, highlights


def _joined(snippet: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent hits as one span: "North Korean" is one highlight, not two."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and out[-1][1] <= start and not snippet[out[-1][1] : start].strip():
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out
