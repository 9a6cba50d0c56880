"""Presearch: which topics can possibly match an item, without evaluating all of them.

Each topic is reduced, when compiled, to groups of index keys such that any item matching
the topic contains a key of every group (Lucene Monitor's idea, kept as a conjunction): a
word gives its forms, an AND or NEAR the groups of all its branches, an OR one group made
of a group of each branch. The topic is indexed under its most selective group; items are
probed with their own keys (see ``Document.keys``) and the candidates' other groups are
checked with set tests, so per-item cost grows with the item, not with the number of
topics. A topic that requires nothing (only NOTs, say) is "unindexed" and is evaluated for
every item: still correct, only slower, and counted in a metric.
"""

from __future__ import annotations

from newswatch.matcher.document import PREFIX_KEY
from newswatch.matcher.syntax import Alias, And, Node, Not, Or, Phrase, Prefix, Word
from newswatch.matcher.text import query_forms

Keys = frozenset[str]


def required(node: Node, algorithms: tuple[str, ...]) -> list[Keys]:
    """Key groups that a matching item must *each* intersect (a conjunction of disjunctions).

    The index uses the most selective group; the others filter candidates with a set test
    before the (much dearer) evaluation. [] means nothing is required (e.g. a NOT).
    """
    if isinstance(node, Word):
        if node.field == "lang":
            return [frozenset({"lang:" + node.text.lower().split("-", 1)[0]})]
        return [query_forms(node.text, algorithms)]
    if isinstance(node, Prefix):
        return [frozenset({"p:" + node.text.lower()[:PREFIX_KEY]})]
    if isinstance(node, Phrase):
        return [frozenset({w.lower()}) for w in dict.fromkeys(node.words)]  # exact words are forms too
    if isinstance(node, Alias):
        return [frozenset(k for name in node.names for k in query_forms(max(name, key=len), algorithms))]
    if isinstance(node, Not):
        return []
    if isinstance(node, Or):
        union: set[str] = set()
        for child in node.children:
            groups = required(child, algorithms)
            if not groups:
                return []  # a branch that requires nothing: neither does the OR
            best: Keys = min(groups, key=_cost)
            union.update(best)
        return [frozenset(union)]
    children = node.children if isinstance(node, And) else (node.left, node.right)
    return [group for child in children for group in required(child, algorithms)]


def _cost(keys: Keys) -> tuple[int, int]:
    """Longer keys first (short words are common words), then fewer of them."""
    return (-min(len(k) for k in keys), len(keys))


class KeyStats:
    """How common each key is in recent items, to index topics under their rarest group.

    Without it a topic is indexed under its longest words, a guess; with it, under the group
    fewest items contain, so fewer topics are candidates for each item. Fed a sample of the
    items (``every``-th one) and decayed by halving, so it follows the news and stays small.
    """

    def __init__(self, every: int = 10, window: int = 20_000) -> None:
        self.every = every
        self.window = window
        self.counts: dict[str, float] = {}
        self.items = 0
        self._seen = 0

    def observe(self, keys: set[str]) -> None:
        self._seen += 1
        if self._seen % self.every:
            return
        counts = self.counts
        for key in keys:
            counts[key] = counts.get(key, 0.0) + 1.0
        self.items += 1
        if self.items >= self.window:  # halve: older items weigh less, rare keys fall out
            self.counts = {k: v / 2 for k, v in counts.items() if v >= 2}
            self.items //= 2

    def frequency(self, group: Keys) -> float:
        """Estimated share of items with a key of ``group`` (upper bound: the sum)."""
        counts = self.counts
        return sum(counts.get(k, 0.0) for k in group) / max(1, self.items)


class Index:
    """Index key → positions (in a topic list) of the topics indexed under it."""

    def __init__(self, groups: list[list[Keys]], stats: KeyStats | None = None) -> None:
        self._postings: dict[str, list[int]] = {}
        self._filters: list[tuple[Keys, ...]] = []
        self.unindexed: list[int] = []
        for position, topic_groups in enumerate(groups):
            if not topic_groups:
                self.unindexed.append(position)
                self._filters.append(())
                continue
            if stats is not None and stats.items:
                best = min(topic_groups, key=lambda g: (stats.frequency(g), _cost(g)))
            else:
                best = min(topic_groups, key=_cost)
            self._filters.append(tuple(g for g in dict.fromkeys(topic_groups) if g is not best))
            for key in best:
                self._postings.setdefault(key, []).append(position)

        self._keys = frozenset(self._postings)

    def candidates(self, doc_keys: set[str]) -> list[int]:
        """Topics indexed under a key of the item whose other required groups it also meets."""
        found: set[int] = set()
        postings = self._postings
        for key in doc_keys & self._keys:  # in C, over the smaller set; few keys hit
            found.update(postings[key])
        filters = self._filters
        kept = list(self.unindexed)
        for position in found:  # a plain loop: this runs for every candidate of every item
            for group in filters[position]:
                if group.isdisjoint(doc_keys):
                    break
            else:
                kept.append(position)
        kept.sort()
        return kept
