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

from collections import Counter

from newswatch.matcher.syntax import Alias, And, Node, Not, Or, Phrase, Prefix, Word
from newswatch.matcher.text import PREFIX_KEY, query_forms

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
    if isinstance(node, Phrase):  # a document word's keys include its lower-case spelling
        return [frozenset({w.lower()}) for w in dict.fromkeys(node.words)]
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
        self.counts: Counter[str] = Counter()
        self.items = 0
        self._seen = 0

    def observe(self, keys: set[str]) -> None:
        self._seen += 1
        if self._seen % self.every:
            return
        self.counts.update(keys)  # counted in C: this runs on the hot path
        self.items += 1
        if self.items >= self.window:  # halve: older items weigh less, rare keys fall out
            self.counts = Counter({k: v // 2 for k, v in self.counts.items() if v >= 2})
            self.items //= 2

    def frequency(self, group: Keys) -> float:
        """Estimated share of items with a key of ``group`` (upper bound: the sum)."""
        counts = self.counts
        return sum(counts.get(k, 0) for k in group) / max(1, self.items)


#: A topic is indexed under a pair of keys (one from each of its two most selective groups)
#: when that takes at most this many pairs; otherwise under single keys, and filtered.
PAIR_LIMIT = 64

Entry = tuple[int, tuple[Keys, ...]]  # a topic's position and the required groups left to test


class Index:
    """Index key → the topics (positions in a topic list) that an item with the key may match.

    A topic with two or more required groups is indexed under pairs of keys, one from its
    most selective group and one from the next, so an item finds it only if it has both.
    The maps are flat, by kind of entry, so that probing an item is a few set operations
    done in C: the item's keys against every first key at once, then, in one ``map``, against
    the second keys of each first key it has. Per item the Python-level work is then for the
    few keys that lead to a topic, not for every key that hit the index (24 of an item's 78
    keys hit, 3 of those lead anywhere, at 10,000 generated topics). What is left is memory
    traffic: each hit reads a set the item has not touched before.
    """

    def __init__(self, groups: list[list[Keys]], stats: KeyStats | None = None) -> None:
        self.unindexed: list[int] = []
        alone: dict[str, list[int]] = {}  # key → topics that require nothing else
        pairs: dict[str, dict[str, list[Entry]]] = {}  # key → second key → topics needing both
        filtered: dict[str, list[Entry]] = {}  # key → topics whose other groups are tested in turn

        def selectivity(group: Keys) -> tuple[float, int, int]:
            rarity = stats.frequency(group) if stats is not None and stats.items else 0.0
            return (rarity, *_cost(group))

        for position, topic_groups in enumerate(groups):
            ordered = sorted(dict.fromkeys(topic_groups), key=selectivity)
            if not ordered:
                self.unindexed.append(position)
                continue
            first, rest = ordered[0], tuple(ordered[1:])
            if not rest:
                for key in first:
                    alone.setdefault(key, []).append(position)
            elif len(first) * len(rest[0]) <= PAIR_LIMIT:
                entry = (position, rest[1:])
                for key in first:
                    by_second = pairs.setdefault(key, {})
                    for second in rest[0]:
                        by_second.setdefault(second, []).append(entry)
            else:
                for key in first:
                    filtered.setdefault(key, []).append((position, rest))
        self._alone = alone
        self._pairs = pairs
        # Tuples, not sets: probing the item's keys with a few strings reads those strings and
        # one small tuple; a set would also scan its sparse table, and weighs 5x as much (at
        # 10,000 topics 0.8 against 4.1 MB), so less of the index stays in cache between items.
        self._seconds = {key: tuple(by_second) for key, by_second in pairs.items()}
        self._filtered = filtered
        self._alone_keys = frozenset(alone)
        self._pair_keys = frozenset(pairs)
        self._filtered_keys = frozenset(filtered)
        self._keys = self._alone_keys | self._pair_keys | self._filtered_keys

    @property
    def keys(self) -> frozenset[str]:
        """The keys topics are indexed under (their most selective group's)."""
        return self._keys

    def candidates(self, doc_keys: set[str]) -> list[int]:
        """Topics indexed under keys of the item whose other required groups it also meets."""
        kept = set(self.unindexed)
        hits = doc_keys & self._keys  # in C, over the item's keys: the one probe of them all
        if not hits:
            return sorted(kept)
        firsts = hits & self._pair_keys  # over the few hits from here on
        if firsts:
            pairs = self._pairs
            seconds_of = self._seconds
            # For every first key at once, in C: has the item none of its second keys? (A
            # test allocates nothing; an intersection is made only for the few that pass.)
            missing = map(doc_keys.isdisjoint, map(seconds_of.__getitem__, firsts))
            for first, none in zip(firsts, missing, strict=True):
                if not none:
                    by_second = pairs[first]
                    for second in doc_keys.intersection(seconds_of[first]):
                        _keep(kept, by_second[second], doc_keys)
        if self._alone:
            for key in hits & self._alone_keys:
                kept.update(self._alone[key])
        if self._filtered:
            for key in hits & self._filtered_keys:
                _keep(kept, self._filtered[key], doc_keys)
        return sorted(kept)


def _keep(kept: set[int], entries: list[Entry], doc_keys: set[str]) -> None:
    """Adds the topics of ``entries`` whose remaining groups each meet ``doc_keys``."""
    for position, others in entries:  # a plain loop: it runs for every item
        for group in others:
            if group.isdisjoint(doc_keys):
                break
        else:
            kept.add(position)
