"""Evaluating a query against a Document, with the reason for a match (pure).

A query is compiled once (``Plan``) into two sets of nested closures, each holding what its
node needs already worked out (a word's forms in every language, its scope, its label):

- ``check``, the hot path, run for every presearch candidate of every item: does the item
  match at all? A word is one set probe (``isdisjoint`` against the scope's keys), a phrase or
  wildcard one substring search in the scope's line (see ``document``); only NEAR and
  multi-word aliases look at positions, and only once their words are known to be present.
- ``hit``, run only for topics that matched: where. Each node yields either no match or a
  ``Hit``: the spans where it matched (needed only under NEAR, so only computed there) and,
  per query term, the positions of the words that satisfied it. The reason carries those
  terms, the best sentence with the hits highlighted, and a score.

Both are compiled from the same tree and must agree; the tests check them against a
brute-force evaluator written independently (``tests/support/oracle.py``).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from itertools import repeat

from newswatch.matcher.document import BODY, FIELD_SPAN, SCOPES, TEXT, TITLE, Document
from newswatch.matcher.errors import EvaluationError
from newswatch.matcher.syntax import Alias, And, Near, Node, Not, Or, Phrase, Prefix, Word, label, leaves
from newswatch.matcher.text import lower, query_forms
from newswatch.shared.contract import MatchReason

_SNIPPET_MAX = 300
_FIELD_BITS = FIELD_SPAN.bit_length() - 1  # position >> _FIELD_BITS is the field
_INDEX_MASK = FIELD_SPAN - 1  # position & _INDEX_MASK the word's index in it

_VALIDATE_REASON: Callable[[dict[str, object]], MatchReason] = (
    MatchReason.__pydantic_validator__.validate_python
)
Span = tuple[int, int]  # first and last position (inclusive)
Check = Callable[[Document], bool]


class Hit:
    """Where a node matched: spans (for NEAR) and, per term, positions of the matching words."""

    __slots__ = ("spans", "terms")

    def __init__(self, spans: list[Span] | None = None, terms: dict[str, set[int]] | None = None) -> None:
        self.spans: list[Span] = spans if spans is not None else []
        self.terms: dict[str, set[int]] = terms if terms is not None else {}


Matcher = Callable[[Document], Hit | None]


class Plan:
    """A compiled query: its check, its hit (for the reason) and its positive terms' labels."""

    __slots__ = ("check", "hit", "labels", "query")

    def __init__(self, node: Node, algorithms: tuple[str, ...]) -> None:
        self.check: Check = _check(node, algorithms)
        self.hit: Matcher = _compile(node, algorithms, spans=False)
        self.labels: tuple[str, ...] = tuple(label(leaf) for leaf in leaves(node))
        self.query = node

    def explain(self, doc: Document) -> MatchReason | None:
        """The reason this query matches ``doc`` (terms, highlighted sentence, score), or None."""
        return self.explain_match(doc) if self.check(doc) else None

    def explain_match(self, doc: Document) -> MatchReason:
        """The reason of a match that ``check`` found."""
        hit = self.hit(doc)
        if hit is None:  # the two compilations disagree: a bug, never a silent miss
            raise EvaluationError(f"the check matched but no hit was found for {self.query!r}")
        return reason(hit, self.labels, doc)


def match(node: Node, doc: Document, algorithms: tuple[str, ...]) -> Hit | None:
    """The hit of ``node`` in ``doc``, or None (compiles the query each time: for one-off use)."""
    return _compile(node, algorithms, spans=True)(doc)


def explain(node: Node, doc: Document, algorithms: tuple[str, ...]) -> MatchReason | None:
    """The reason ``node`` matches ``doc``, or None (compiles the query each time: for one-off use)."""
    return Plan(node, algorithms).explain(doc)


# --- check: does it match? ---------------------------------------------------------------------


def _check(node: Node, algorithms: tuple[str, ...]) -> Check:
    if isinstance(node, Word):
        if node.field == "lang":
            return _language_check(node)
        return _forms_check(query_forms(node.text, algorithms), SCOPES[node.field])
    if isinstance(node, Prefix | Phrase):
        return _line_check(_needle(node), SCOPES[node.field])
    if isinstance(node, Alias):
        return _alias_check(node, algorithms)
    if isinstance(node, Not):
        return _not_check(_check(node.child, algorithms))
    if isinstance(node, And | Or):
        return _group_check(node, algorithms)
    left, right = _check(node.left, algorithms), _check(node.right, algorithms)
    where = _near(node, _compile(node.left, algorithms, True), _compile(node.right, algorithms, True))

    def near(doc: Document) -> bool:
        return left(doc) and right(doc) and where(doc) is not None  # positions only if both occur

    return near


def _needle(node: Prefix | Phrase) -> str:
    """What a node is in a document's line: a phrase its lower-case words, spaced, with a
    space each side; a wildcard its lower-case prefix after a space."""
    if isinstance(node, Prefix):
        return " " + lower(node.text)
    return " " + " ".join(lower(w) for w in node.words) + " "


def _language_check(node: Word) -> Check:
    wanted = lower(node.text)
    dialect = wanted + "-"

    def language(doc: Document) -> bool:
        return doc.language == wanted or doc.language.startswith(dialect)

    return language


def _forms_check(forms: frozenset[str], scope: int) -> Check:
    if scope == BODY:

        def word(doc: Document) -> bool:
            return not forms.isdisjoint(doc.body)

        return word

    def scoped_word(doc: Document) -> bool:
        return not forms.isdisjoint(doc.field_keys(scope))

    return scoped_word


def _line_check(needle: str, scope: int) -> Check:
    def substring(doc: Document) -> bool:
        return needle in doc.lines[scope]

    return substring


def _alias_check(node: Alias, algorithms: tuple[str, ...]) -> Check:
    scope = SCOPES[node.field]
    single: set[str] = set()  # forms of the one-word names: one probe for all of them
    multi: list[tuple[frozenset[str], ...]] = []
    for name in node.names:
        forms = tuple(query_forms(w, algorithms) for w in name)
        if len(forms) == 1:
            single.update(forms[0])
        else:
            multi.append(forms)
    singles = frozenset(single)

    def alias(doc: Document) -> bool:
        keys = doc.field_keys(scope)
        if not singles.isdisjoint(keys):
            return True
        for forms in multi:
            for word in forms:
                if word.isdisjoint(keys):
                    break
            else:
                if doc.sequence_starts(forms, scope):
                    return True
        return False

    return alias


def _not_check(child: Check) -> Check:
    def negation(doc: Document) -> bool:
        return not child(doc)

    return negation


def _group_check(node: And | Or, algorithms: tuple[str, ...]) -> Check:
    """AND / OR; the children that are plain title-or-text words become set probes in one
    loop (an OR of such words is one probe of their forms together)."""
    probes: list[frozenset[str]] = []
    checks: list[Check] = []
    for child in node.children:
        if isinstance(child, Word) and child.field is None:
            probes.append(query_forms(child.text, algorithms))
        else:
            checks.append(_check(child, algorithms))
    others = tuple(checks)
    if isinstance(node, Or):
        either = frozenset().union(*probes)

        def disjunction(doc: Document) -> bool:
            if not either.isdisjoint(doc.body):
                return True
            return any(child(doc) for child in others)

        return disjunction

    def conjunction(doc: Document) -> bool:
        body = doc.body
        for forms in probes:
            if forms.isdisjoint(body):
                return False
        return all(child(doc) for child in others)

    return conjunction


# --- hit: where does it match? -------------------------------------------------------------


def _points(positions: list[int]) -> list[Span]:
    return [(p, p) for p in positions]


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
        return _not(_check(node.child, algorithms))
    if isinstance(node, And):  # an AND has no spans of its own (NEAR takes positional operands)
        return _and(tuple(_compile(c, algorithms, spans=False) for c in node.children))
    if isinstance(node, Or):
        return _or(tuple(_compile(c, algorithms, spans) for c in node.children), spans)
    return _near(node, _compile(node.left, algorithms, True), _compile(node.right, algorithms, True))


def _language(node: Word) -> Matcher:
    matches = _language_check(node)
    name = label(node)

    def language(doc: Document) -> Hit | None:
        return Hit([], {name: set()}) if matches(doc) else None

    return language


def _word(node: Word, algorithms: tuple[str, ...], spans: bool) -> Matcher:
    forms = query_forms(node.text, algorithms)
    scope = SCOPES[node.field]
    return _single(label(node), lambda doc: doc.positions(forms, scope), spans)


def _prefix(node: Prefix, spans: bool) -> Matcher:
    needle = _needle(node)
    scope = SCOPES[node.field]
    return _single(label(node), lambda doc: doc.starts(needle, scope), spans)


def _single(name: str, where: Callable[[Document], list[int]], spans: bool) -> Matcher:
    """A term of one word (a word or a wildcard) found at ``where``'s positions."""

    def single(doc: Document) -> Hit | None:
        found = where(doc)
        if not found:
            return None
        return Hit(_points(found) if spans else [], {name: set(found)})

    return single


def _phrase(node: Phrase) -> Matcher:
    needle = _needle(node)
    scope = SCOPES[node.field]
    name = label(node)
    width = len(node.words) - 1

    def phrase(doc: Document) -> Hit | None:
        return _leaf(name, [(start, start + width) for start in doc.starts(needle, scope)])

    return phrase


def _alias(node: Alias, algorithms: tuple[str, ...]) -> Matcher:
    names = tuple(tuple(query_forms(w, algorithms) for w in alternative) for alternative in node.names)
    scope = SCOPES[node.field]
    name = label(node)

    def alias(doc: Document) -> Hit | None:
        found: set[Span] = set()
        for forms in names:
            width = len(forms) - 1
            starts = doc.positions(forms[0], scope) if not width else doc.sequence_starts(forms, scope)
            found.update((start, start + width) for start in starts)
        return _leaf(name, sorted(found))

    return alias


def _not(child: Check) -> Matcher:
    def negation(doc: Document) -> Hit | None:
        return None if child(doc) else Hit()

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
        spans = _close_pairs(left.spans, right.spans, distance)
        if not ordered:
            spans |= {(s, e) for s, e in _close_pairs(right.spans, left.spans, distance)}
        if not spans:
            return None
        used = {p for s, e in spans for p in range(s, e + 1)}
        hit = Hit(sorted(spans))
        for side in (left, right):
            for term, positions in side.terms.items():
                hit.terms.setdefault(term, set()).update(positions & used or positions)
        return hit

    return near


def _close_pairs(first: list[Span], then: list[Span], distance: int) -> set[Span]:
    """The spans of ``first`` followed within ``distance`` by one of ``then`` (same field),
    each joined to the nearest such follower, and each of ``then`` joined to the nearest of
    ``first`` before it: at most one pair per span, so the work grows with the number of
    hits, never with their product (a chain of NEARs over a common word once cost seconds).
    A nearer pair is always the tighter span, so no match is lost by keeping only these."""
    if not first or not then:
        return set()
    by_start = sorted(set(then))
    starts = [s for s, _e in by_start]
    by_end = sorted(set(first), key=lambda span: span[1])
    ends = [e for _s, e in by_end]
    out: set[Span] = set()
    for ls, le in by_end:  # the nearest follower of each span of ``first``
        i = bisect.bisect_right(starts, le)
        if i < len(starts):
            rs, re_ = by_start[i]
            if rs - le <= distance and ls >> _FIELD_BITS == rs >> _FIELD_BITS:
                out.add((ls, max(le, re_)))
    for rs, re_ in by_start:  # the nearest span of ``first`` before each follower
        j = bisect.bisect_left(ends, rs) - 1
        if j >= 0:
            ls, le = by_end[j]
            if rs - le <= distance and ls >> _FIELD_BITS == rs >> _FIELD_BITS:
                out.add((min(ls, rs), max(le, re_)))
    return out


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


# --- the reason ----------------------------------------------------------------------------


def reason(hit: Hit, labels: tuple[str, ...], doc: Document) -> MatchReason:
    """The reason of a hit: matched words per term, the best sentence highlighted, a score.

    The score is the share of the query's terms (``labels``) found, a term in the title
    counting double: 1 for a title hit (or a term with no position, such as ``lang:``),
    0.5 for a hit elsewhere, over the number of terms; 0.5 for a query of NOTs only.
    """
    written = doc.written
    terms: dict[str, list[str]] = {}
    halves: dict[str, int] = {}  # a term's weight in halves: 2 in the title, else 1
    ordered: list[int] = []
    for term, positions in hit.terms.items():
        if len(positions) == 1:  # most terms: one word, so nothing to sort or deduplicate
            ordered = list(positions)
            terms[term] = [written(ordered[0])]
        else:
            ordered = sorted(positions)
            terms[term] = list(dict.fromkeys(map(written, ordered)))
        halves[term] = 2 if not ordered or ordered[0] < FIELD_SPAN else 1  # TITLE is field 0
    score = _score(sum(map(halves.get, labels, repeat(0))), len(labels)) if labels else 0.5
    if len(hit.terms) > 1:  # one term (most queries): its positions are sorted already
        ordered = sorted(set().union(*hit.terms.values()))
    snippet, highlights = best_snippet(doc, ordered)
    # Validated, so a bug here fails loudly, by the model's validator itself (pydantic's
    # documented ``__pydantic_validator__``): 13k instructions, against 17k through the
    # model's Python-level ``__init__`` and 26k for ``model_construct`` (measured).
    return _VALIDATE_REASON({"terms": terms, "snippet": snippet, "highlights": highlights, "score": score})


@functools.lru_cache(maxsize=4096)
def _score(halves: int, terms: int) -> float:
    """The score of ``halves`` (see ``reason``) over ``terms`` terms, rounded to 3 places:
    the same few values over and over, and ``round`` alone cost 0.75 µs (measured)."""
    return round(min(1.0, halves / 2 / terms), 3)


def best_snippet(doc: Document, ordered: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The title or text sentence holding the most hits (``ordered``: their positions,
    ascending: title hits, then text hits, each in reading order), with their character spans."""
    title_end = bisect.bisect_left(ordered, FIELD_SPAN)  # TITLE is field 0, TEXT field 1
    in_title = ordered[:title_end]
    in_text = ordered[title_end : bisect.bisect_left(ordered, 2 * FIELD_SPAN, title_end)]
    field_id, start, end, hits = TITLE, 0, len(doc.title), in_title
    if in_text:
        offsets = doc.offsets(TEXT)
        ends = doc.sentence_ends()
        best, current = -1, -1  # a sentence is named by its number: the runs of marks before it
        best_hits: list[int] = []
        current_hits: list[int] = []
        for p in in_text:  # sentences in order: group runs, keep the first of the largest
            number = bisect.bisect_right(ends, offsets[2 * (p - FIELD_SPAN)])
            if number == current:
                current_hits.append(p)
                continue
            if len(current_hits) > len(best_hits):
                best, best_hits = current, current_hits
            current, current_hits = number, [p]
        if len(current_hits) > len(best_hits):
            best, best_hits = current, current_hits
        if len(best_hits) > len(in_title):  # the title wins a tie
            field_id, hits = TEXT, best_hits
            start = ends[best - 1] if best else 0
            end = ends[best] if best < len(ends) else len(doc.text)
    source = doc.title if field_id == TITLE else doc.text
    sentence = source[start:end]
    stripped = sentence.lstrip()
    start += len(sentence) - len(stripped)
    snippet = stripped.rstrip()
    limit = start + len(snippet)
    highlights = []
    if hits:
        offsets = doc.offsets(field_id)
        for p in hits:  # ascending positions: ascending character spans
            i = 2 * (p & _INDEX_MASK)
            s, e = offsets[i], offsets[i + 1]
            if start <= s and e <= limit:
                highlights.append((s - start, e - start))
    if len(highlights) > 1:
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
