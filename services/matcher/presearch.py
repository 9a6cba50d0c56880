"""Presearch: which topics can possibly match an item, without evaluating all of them.

Each topic is reduced, when compiled, to groups of index keys such that any item matching
the topic contains a key of every group (Lucene Monitor's idea, kept as a conjunction): a
word gives its forms, an AND or NEAR the groups of all its branches, an OR one group made
of a group of each branch. The topic is indexed under its most selective group; items are
probed with their own keys (see ``Document.body`` and ``extra``) and the candidates' other groups are
checked with set tests, so per-item cost grows with the item, not with the number of
topics. A topic that requires nothing (only NOTs, say) is "unindexed" and is evaluated for
every item: still correct, only slower, and counted in a metric.
"""

from __future__ import annotations

from collections import Counter

from newswatch.matcher.keypairs import Triple, pair_table
from newswatch.matcher.syntax import Alias, And, Node, Not, Or, Phrase, Prefix, Word
from newswatch.matcher.text import PREFIX_KEY, lower, query_forms

Keys = frozenset[str]


def required(node: Node, algorithms: tuple[str, ...]) -> list[Keys]:
    """Key groups that a matching item must *each* intersect (a conjunction of disjunctions).

    The index uses the most selective group; the others filter candidates with a set test
    before the (much dearer) evaluation. [] means nothing is required (e.g. a NOT).
    """
    if isinstance(node, Word):
        if node.field == "lang":
            return [frozenset({"lang:" + lower(node.text).split("-", 1)[0]})]
        return [query_forms(node.text, algorithms)]
    if isinstance(node, Prefix):
        return [frozenset({"p:" + lower(node.text)[:PREFIX_KEY]})]
    if isinstance(node, Phrase):  # a document word's keys include its lower-case spelling
        return [frozenset({lower(w)}) for w in dict.fromkeys(node.words)]
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
    items and decayed by halving, so it follows the news and stays small: one item in
    ``warmup_every`` until ``warmup`` are counted (the first re-plan comes after 200), then
    one in ``every``. Counting an item touches ~80 counters out of cache (35 µs at 10,000
    topics, measured), which every 10th item made 4 µs of every item's cost.
    ``window`` (in counted items) spans 200,000 items either way.
    """

    def __init__(
        self, every: int = 50, window: int = 4_000, warmup: int = 200, warmup_every: int = 10
    ) -> None:
        self.every = every
        self.window = window
        self.warmup = warmup
        self.warmup_every = min(warmup_every, every)
        self.counts: Counter[str] = Counter()
        self.items = 0
        self._seen = 0

    def observe(self, *key_sets: set[str]) -> None:
        """Counts an item's keys (given as sets that together hold them), if it is sampled."""
        self._seen += 1
        if self._seen % (self.every if self.items >= self.warmup else self.warmup_every):
            return
        self.counts.update(key_sets[0] if len(key_sets) == 1 else set[str]().union(*key_sets))  # in C
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
    """The topics (positions in a topic list) that an item may match, found from its keys.

    A topic with two or more required groups is indexed under pairs of keys, one from its
    most selective group and one from the next, so an item finds it only if it has both;
    a topic with one group, or whose two best groups would make too many pairs, is indexed
    under each key of its best group as a pair of that key with itself. Every pair leads
    to an entry: the topic and the groups it still requires, tested with set operations.
    The pairs are one ``PairTable`` (``keypairs``: flat hashes in C when built), so probing
    an item is one call; per item the Python-level work is then only for the entries found
    (about 7 at 10,000 generated topics, against 24 of the item's 78 keys that lead to a
    topic and 150 second keys to test behind them).
    """

    def __init__(self, groups: list[list[Keys]], stats: KeyStats | None = None) -> None:
        self.unindexed: list[int] = []
        triples: list[Triple] = []
        entries: list[Entry] = []
        firsts: set[str] = set()

        def selectivity(group: Keys) -> tuple[float, int, int]:
            rarity = stats.frequency(group) if stats is not None and stats.items else 0.0
            return (rarity, *_cost(group))

        for position, topic_groups in enumerate(groups):
            ordered = sorted(dict.fromkeys(topic_groups), key=selectivity)
            if not ordered:
                self.unindexed.append(position)
                continue
            first, rest = ordered[0], tuple(ordered[1:])
            firsts.update(first)
            entry = len(entries)
            if rest and len(first) * len(rest[0]) <= PAIR_LIMIT:
                entries.append((position, rest[1:]))
                triples += [(key, second, entry) for key in first for second in rest[0]]
            else:  # one group, or too many pairs: each key alone, the rest tested in turn
                entries.append((position, rest))
                triples += [(key, key, entry) for key in first]
        self._entries = entries
        self._table = pair_table(triples)
        self._keys = frozenset(firsts)

    @property
    def keys(self) -> frozenset[str]:
        """The keys topics are indexed under (their most selective group's)."""
        return self._keys

    @property
    def pairs(self) -> int:
        """Pairs of keys in the table (a topic has one per key pair of its two best groups)."""
        return len(self._table)

    def candidates(self, *key_sets: set[str]) -> list[int]:
        """Topics indexed under pairs of the item's keys (given as sets that together hold
        them: not copied into one) whose other required groups it meets."""
        kept = set(self.unindexed)
        entries = self._entries
        for position, others in map(entries.__getitem__, self._table.probe(*key_sets)):
            if others and not _meets(others, key_sets):  # most entries have none left
                continue
            kept.add(position)
        return sorted(kept)


def _meets(groups: tuple[Keys, ...], key_sets: tuple[set[str], ...]) -> bool:
    """Whether each of ``groups`` has a key in one of ``key_sets``."""
    for group in groups:
        for keys in key_sets:
            if not group.isdisjoint(keys):
                break
        else:
            return False
    return True
