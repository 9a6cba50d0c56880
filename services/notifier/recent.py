"""Recent items for query previews, read from ``newswatch.items`` at most every ``ttl``.

A live preview asks on every pause in typing; reading the topic each time would cost a
consumer and a full read per keystroke (and let one user make the notifier read Kafka in a
loop). One read serves every preview for ``ttl`` seconds, filtered to the period asked; a
longer period than the cached one is read anew. One read at a time: concurrent previews
wait for it and share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from newswatch.shared.contract import Item


@dataclass(frozen=True)
class Snapshot:
    items: list[tuple[float, Item]]  # (published on the topic at, wall clock seconds; item)
    since: float
    read_at: float  # wall clock


class RecentItems:
    def __init__(
        self,
        read: Callable[[float], list[tuple[float, Item]]],
        ttl: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._taken = float("-inf")

    def get(self, since: float) -> list[Item]:
        """Items published on the topic within the last ``since`` seconds (latest revisions)."""
        with self._lock:
            fresh = self._monotonic() - self._taken < self._ttl
            if self._snapshot is None or not fresh or self._snapshot.since < since:
                self._snapshot = Snapshot(self._read(since), since, self._wall())
                self._taken = self._monotonic()
            snapshot = self._snapshot
        cutoff = snapshot.read_at - since
        return [item for at, item in snapshot.items if at >= cutoff]
