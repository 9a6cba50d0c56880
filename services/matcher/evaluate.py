"""Evaluating a query tree against a Document, with the reason for a match (pure).

A query is compiled once into nested closures (``Plan``): each node's closure holds what
the node needs already worked out (a word's forms in every language, its field's position
range, its label), so evaluating a topic against an item is a few dict probes, with no
tree walk, no type dispatch and no hashing of nodes. This is the matcher's hot path: it
runs for every presearch candidate of every item.

Each node yields either no match or a ``Hit``: the spans where it matched (needed only
under NEAR, so only computed there) and, per query term, the positions of the words that
satisfied it (the "why"). The reason carries those terms, the best sentence with the hits
highlighted, and a score.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Sequence

from newswatch.matcher.document import FIELD_IDS, FIELD_SPAN, TEXT, TITLE, Document
from newswatch.matcher.syntax import Alias, And, Near, Node, Not, Or, Phrase, Prefix, Word, label, leaves
from newswatch.matcher.text import query_forms
from newswatch.shared.contract import MatchReason

_SNIPPET_MAX = 300
_FIELD_BITS = FIELD_SPAN.bit_length() - 1  # position >> _FIELD_BITS is the field
_INDEX_MASK = FIELD_SPAN - 1  # position & _INDEX_MASK the word's index in it

Span = tuple[int, int]  # first and last position (inclusive)


class Hit:
    """Where a node matched: spans (for NEAR) and, per term, positions of the matching words."""

    __slots__ = ("spans", "terms")

    def __init__(self, spans: list[Span] | None = None, terms: dict[str, set[int]] | None = None) -> None:
        self.spans: list[Span] = spans if spans is not None else []
        self.terms: dict[str, set[int]] = terms if terms is not None else {}


Matcher = Callable[[Document], Hit | None]


class Plan:
    """A compiled query: its matcher, and the labels of its positive terms (for the score)."""

    __slots__ = ("labels", "match")

    def __init__(self, node: Node, algorithms: tuple[str, ...]) -> None:
        self.match: Matcher = _compile(node, algorithms, spans=False)
        self.labels: tuple[str, ...] = tuple(label(leaf) for leaf in leaves(node))

    def explain(self, doc: Document) -> MatchReason | None:
        """The reason this query matches ``doc`` (terms, highlighted sentence, score), or None."""
        hit = self.match(doc)
        return None if hit is None else reason(hit, self.labels, doc)


def match(node: Node, doc: Document, algorithms: tuple[str, ...]) -> Hit | None:
    """The hit of ``node`` in ``doc``, or None (compiles the query each time: for one-off use)."""
    return _compile(node, algorithms, spans=True)(doc)


def explain(node: Node, doc: Document, algorithms: tuple[str, ...]) -> MatchReason | None:
    """The reason ``node`` matches ``doc``, or None (compiles the query each time: for one-off use)."""
    return Plan(node, algorithms).explain(doc)


def _bounds(field: str | None) -> tuple[int, int]:
    """The position range [lo, hi) of a field scope (each scope is a run of adjacent fields)."""
    ids = FIELD_IDS[field]
    return ids[0] * FIELD_SPAN, (ids[-1] + 1) * FIELD_SPAN


def _points(positions: set[int]) -> list[Span]:
    return [(p, p) for p in sorted(positions)]


def _compile(node: Node, algorithms: tuple[str, ...], spans: bool) -> Matcher:
    """The matcher of ``node``; ``spans``: whether a NEAR above it needs where it matched."""
    if isinstance(node, Word):
        return _language(node) if node.field == "lang" else _word(node, algorithms, spans)
    if isinstance(node, Prefix):
        return _prefix(node, spans)
    if isinstance(node, Phrase):
        return _phrase(node)
    if isinstance(node, Alias):
        return _alias(node, algorithms)
    if isinstance(node, Not):
        return _not(_compile(node.child, algorithms, spans=False))
    if isinstance(node, And):  # an AND has no spans of its own (NEAR takes positional operands)
        return _and(tuple(_compile(c, algorithms, spans=False) for c in node.children))
    if isinstance(node, Or):
        return _or(tuple(_compile(c, algorithms, spans) for c in node.children), spans)
    return _near(node, _compile(node.left, algorithms, True), _compile(node.right, algorithms, True))


def _language(node: Word) -> Matcher:
    wanted = node.text.lower()
    dialect = wanted + "-"
    name = label(node)

    def language(doc: Document) -> Hit | None:
        code = doc.language
        return Hit([], {name: set()}) if code == wanted or code.startswith(dialect) else None

    return language


def _word(node: Word, algorithms: tuple[str, ...], spans: bool) -> Matcher:
    forms = tuple(query_forms(node.text, algorithms))
    lo, hi = _bounds(node.field)
    name = label(node)

    def word(doc: Document) -> Hit | None:
        get = doc.forms.get
        found: set[int] | None = None
        for form in forms:
            positions = get(form)
            if positions:
                if found is None:
                    found = set()
                if lo <= positions[0] and positions[-1] < hi:  # positions are ascending
                    found.update(positions)
                else:
                    found.update([p for p in positions if lo <= p < hi])
        if not found:
            return None
        return Hit(_points(found) if spans else [], {name: found})

    return word


def _prefix(node: Prefix, spans: bool) -> Matcher:
    prefix = node.text.lower()
    lo, hi = _bounds(node.field)
    name = label(node)

    def wildcard(doc: Document) -> Hit | None:
        found: set[int] = set()
        for word, positions in doc.words.items():
            if word.startswith(prefix):
                found.update([p for p in positions if lo <= p < hi])
        if not found:
            return None
        return Hit(_points(found) if spans else [], {name: found})

    return wildcard


def _phrase(node: Phrase) -> Matcher:
    first, *rest = (w.lower() for w in node.words)
    lo, hi = _bounds(node.field)
    name = label(node)
    width = len(rest)

    def phrase(doc: Document) -> Hit | None:
        get = doc.words.get
        starts = get(first)
        if not starts:
            return None
        following: list[Collection[int]] = []
        for word in rest:
            positions = get(word)
            if not positions:
                return None
            following.append(positions)  # a word's positions are few: a list is tested fastest
        return _leaf(name, [(start, start + width) for start in _sequence(starts, following, lo, hi)])

    return phrase


def _alias(node: Alias, algorithms: tuple[str, ...]) -> Matcher:
    names = tuple(tuple(tuple(query_forms(w, algorithms)) for w in alternative) for alternative in node.names)
    lo, hi = _bounds(node.field)
    name = label(node)

    def alias(doc: Document) -> Hit | None:
        get = doc.forms.get
        found: set[Span] = set()
        for alternative in names:
            words: list[set[int]] = []
            for forms in alternative:
                positions: set[int] = set()
                for form in forms:
                    at = get(form)
                    if at:
                        positions.update(at)
                if not positions:
                    break
                words.append(positions)
            else:
                starts = _sequence(sorted(words[0]), words[1:], lo, hi)
                found.update((start, start + len(words) - 1) for start in starts)
        return _leaf(name, sorted(found))

    return alias


def _not(child: Matcher) -> Matcher:
    def negation(doc: Document) -> Hit | None:
        return None if child(doc) is not None else Hit()

    return negation


def _and(children: tuple[Matcher, ...]) -> Matcher:
    def conjunction(doc: Document) -> Hit | None:
        terms: dict[str, set[int]] = {}
        for child in children:
            hit = child(doc)
            if hit is None:
                return None
            _merge(terms, hit.terms)
        return Hit([], terms)

    return conjunction


def _or(children: tuple[Matcher, ...], spans: bool) -> Matcher:
    def disjunction(doc: Document) -> Hit | None:
        terms: dict[str, set[int]] = {}
        found: list[Span] = []
        matched = False
        for child in children:
            hit = child(doc)
            if hit is not None:
                matched = True
                if spans:
                    found += hit.spans
                _merge(terms, hit.terms)
        return Hit(found, terms) if matched else None

    return disjunction


def _near(node: Near, left_of: Matcher, right_of: Matcher) -> Matcher:
    distance, ordered = node.distance, node.ordered

    def near(doc: Document) -> Hit | None:
        left = left_of(doc)
        right = right_of(doc) if left is not None else None
        if left is None or right is None:
            return None
        spans = []
        for ls, le in left.spans:
            for rs, re_ in right.spans:
                if ls // FIELD_SPAN != rs // FIELD_SPAN:
                    continue
                if ordered:
                    close = le < rs and rs - le <= distance
                else:
                    close = (le < rs and rs - le <= distance) or (re_ < ls and ls - re_ <= distance)
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

    return near


def _leaf(name: str, spans: list[Span]) -> Hit | None:
    if not spans:
        return None
    return Hit(spans, {name: {p for s, e in spans for p in range(s, e + 1)}})


def _merge(terms: dict[str, set[int]], more: dict[str, set[int]]) -> None:
    """Adds ``more`` into ``terms``, taking over its sets: a child's hit is used only once."""
    for term, positions in more.items():
        have = terms.get(term)
        if have is None:
            terms[term] = positions
        else:
            have |= positions


def _sequence(starts: list[int], following: Sequence[Collection[int]], lo: int, hi: int) -> list[int]:
    """Positions where a sequence starts: word 0 at p (ascending ``starts``), word i at p + i.

    Only within [lo, hi), and never across into the next field.
    """
    end = len(following)
    if end == 1:  # two words, the common case: one comprehension
        second = following[0]
        return [p for p in starts if lo <= p < hi and p + 1 in second and (p + 1) & _INDEX_MASK]
    found = []
    for start in starts:
        if lo <= start < hi and (start + end) // FIELD_SPAN == start // FIELD_SPAN:
            for i, later in enumerate(following, 1):
                if start + i not in later:
                    break
            else:
                found.append(start)
    return found


def reason(hit: Hit, labels: tuple[str, ...], doc: Document) -> MatchReason:
    """The reason of a hit: matched words per term, the best sentence highlighted, a score.

    The score is the share of the query's terms (``labels``) found, a term in the title
    counting double: 1 for a title hit (or a term with no position, such as ``lang:``),
    0.5 for a hit elsewhere, over the number of terms; 0.5 for a query of NOTs only.
    """
    surface = doc.surface
    terms: dict[str, list[str]] = {}
    weights: dict[str, float] = {}
    every: set[int] = set()
    for term, positions in hit.terms.items():
        ordered = sorted(positions)
        every |= positions
        words = [surface[p >> _FIELD_BITS][p & _INDEX_MASK] for p in ordered]
        terms[term] = list(dict.fromkeys(words))
        weights[term] = 1.0 if not ordered or ordered[0] < FIELD_SPAN else 0.5  # TITLE is field 0
    score = round(min(1.0, sum(weights.get(n, 0.0) for n in labels) / len(labels)), 3) if labels else 0.5
    snippet, highlights = best_snippet(doc, every)
    # Validated, not model_construct: pydantic's validator (in Rust) is faster than its
    # Python-level construct (1.1 against 1.4 µs measured), and a bug here fails loudly.
    return MatchReason(terms=terms, snippet=snippet, highlights=highlights, score=score)


def best_snippet(doc: Document, positions: set[int]) -> tuple[str, list[tuple[int, int]]]:
    """The title or text sentence holding the most hits, with the hits' character spans."""
    ordered = sorted(positions)  # ascending: title hits, then text hits, each in reading order
    title_end = bisect.bisect_left(ordered, FIELD_SPAN)  # TITLE is field 0, TEXT field 1
    in_title = ordered[:title_end]
    in_text = ordered[title_end : bisect.bisect_left(ordered, 2 * FIELD_SPAN, title_end)]
    field_id, start, end, hits = TITLE, 0, len(doc.title), in_title
    if in_text:
        starts = doc.sentence_starts
        offsets = doc.offsets[TEXT]
        best, current = -1, -1
        best_hits: list[int] = []
        current_hits: list[int] = []
        for p in in_text:  # sentences in order: group runs, keep the first of the largest
            index = bisect.bisect_right(starts, offsets[p - FIELD_SPAN][0]) - 1
            if index == current:
                current_hits.append(p)
                continue
            if len(current_hits) > len(best_hits):
                best, best_hits = current, current_hits
            current, current_hits = index, [p]
        if len(current_hits) > len(best_hits):
            best, best_hits = current, current_hits
        if len(best_hits) > len(in_title):  # the title wins a tie
            field_id, hits = TEXT, best_hits
            start = starts[best]
            end = starts[best + 1] if best + 1 < len(starts) else len(doc.text)
    source = doc.title if field_id == TITLE else doc.text
    sentence = source[start:end]
    stripped = sentence.lstrip()
    start += len(sentence) - len(stripped)
    snippet = stripped.rstrip()
    offsets = doc.offsets[field_id]
    limit = start + len(snippet)
    highlights = []
    for p in hits:  # ascending positions: ascending character spans
        s, e = offsets[p & _INDEX_MASK]
        if start <= s and e <= limit:
            highlights.append((s - start, e - start))
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
