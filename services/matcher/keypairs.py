"""Presearch's pair table: (first key, second key) → entry ids, probed with an item's keys.

``probe`` answers, for one item, every id whose two keys the item both has; presearch
(``presearch.Index``) stores each indexed topic under such pairs. It runs for every item
and is memory-bound, so it has two implementations with one behaviour:

- ``_keypairs`` (C, ``_keypairs.c``, built at install with the mypyc modules): flat arrays of
  the keys' hashes, the item's keys copied into a small hash set first, the table's cache
  lines fetched ahead. It compares hashes only: two different keys with the same 64-bit
  hash could add a candidate, never lose one (every candidate is then evaluated in full);
- ``PyKeyPairs`` here, comparing keys by value: the fallback when the extension is not
  built, and the reference the tests hold the C one to.

``pair_table`` gives the C one when it was built. An id appears once for each pair of the
item's keys that leads to it, so callers that need each id once deduplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

Triple = tuple[str, str, int]  # first key, second key, id (0 .. 2**32 - 1)
_MAX_ID = 2**32 - 1


class PairTable(Protocol):
    """What presearch needs of a pair table (see the module docstring)."""

    @property
    def firsts(self) -> int: ...

    def __len__(self) -> int: ...

    def probe(self, *key_sets: Iterable[str]) -> list[int]: ...


class PyKeyPairs:
    """The pair table in Python: first key → its second keys and, per second key, the ids."""

    def __init__(self, triples: Sequence[Triple]) -> None:
        pairs: dict[str, dict[str, list[int]]] = {}
        for i, (first, second, id_) in enumerate(triples):
            if not 0 <= id_ <= _MAX_ID:
                raise OverflowError(f"KeyPairs: id {id_} of pair {i} is not in 0 .. 2**32 - 1")
            pairs.setdefault(first, {}).setdefault(second, []).append(id_)
        self._pairs = pairs
        # Tuples, not sets: the item's keys are the set; a probe reads a few strings.
        self._seconds = {first: tuple(by_second) for first, by_second in pairs.items()}
        self._firsts = frozenset(pairs)
        self._size = len(triples)

    @property
    def firsts(self) -> int:
        return len(self._firsts)

    def __len__(self) -> int:
        return self._size

    def probe(self, *key_sets: Iterable[str]) -> list[int]:
        first_set = key_sets[0] if len(key_sets) == 1 else None
        keys = first_set if isinstance(first_set, set | frozenset) else set[str]().union(*key_sets)
        found: list[int] = []
        seconds_of = self._seconds
        firsts = self._firsts.intersection(keys)
        # Has the item none of a first key's seconds? One C-level test per first key.
        missing = map(keys.isdisjoint, map(seconds_of.__getitem__, firsts))
        for first, none in zip(firsts, missing, strict=True):
            if not none:
                by_second = self._pairs[first]
                for second in keys.intersection(seconds_of[first]):
                    found += by_second[second]
        return found


def pair_table(triples: Sequence[Triple]) -> PairTable:
    """The C table when the extension was built, else the Python one (same results)."""
    return (_C_TABLE or PyKeyPairs)(triples)


_C_TABLE: Callable[[Sequence[Triple]], PairTable] | None
try:
    from newswatch.matcher._keypairs import KeyPairs as _C_TABLE
except ImportError:  # not built: no compiler at install, or NEWSWATCH_PURE_PYTHON=1
    _C_TABLE = None
#: Whether the C table is in use (a metric and a start-up log line say so).
PAIRS_IN_C = _C_TABLE is not None
