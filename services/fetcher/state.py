"""The fetcher's persistent state: per-feed HTTP validators and a bounded seen-set.

SQLite so a restart never re-publishes what Kafka already acknowledged. Items enter the
seen-set only after their acknowledgement, and validators are saved only after the
poll's items are safe: a failed publish is retried with a full (non-304) fetch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from newswatch.fetcher.http_fetch import Validators
from newswatch.shared.sqlite import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_state (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    feed_url TEXT NOT NULL,
    item_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (feed_url, item_id)
);
CREATE INDEX IF NOT EXISTS seen_by_age ON seen (feed_url, seen_at);
"""


class FetcherStore:
    def __init__(self, path: Path, keep_per_feed: int, clock: Callable[[], float] = time.time) -> None:
        self._db = open_sqlite(path, _SCHEMA, "fetcher state")
        self._lock = threading.Lock()
        self._keep = keep_per_feed
        self._clock = clock

    def validators(self, url: str) -> Validators:
        with self._lock:
            row = self._db.execute(
                "SELECT etag, last_modified FROM feed_state WHERE url = ?", (url,)
            ).fetchone()
        return Validators(*row) if row else Validators()

    def save_validators(self, url: str, validators: Validators) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO feed_state (url, etag, last_modified, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, "
                "updated_at = excluded.updated_at",
                (url, validators.etag, validators.last_modified, self._clock()),
            )

    def unseen(self, feed_url: str, item_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return set()
        with self._lock:
            seen = {
                row[0]
                for chunk in _chunks(ids, 500)
                for row in self._db.execute(
                    f"SELECT item_id FROM seen WHERE feed_url = ? AND item_id IN ({','.join('?' * len(chunk))})",  # noqa: S608 - placeholders only
                    (feed_url, *chunk),
                )
            }
        return set(ids) - seen

    def mark_seen(self, feed_url: str, item_ids: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO seen (feed_url, item_id, seen_at) VALUES (?, ?, ?)",
                [(feed_url, i, now) for i in item_ids],
            )
            self._db.execute(
                "DELETE FROM seen WHERE feed_url = ? AND item_id NOT IN "
                "(SELECT item_id FROM seen WHERE feed_url = ? ORDER BY seen_at DESC LIMIT ?)",
                (feed_url, feed_url, self._keep),
            )
            self._db.execute("COMMIT")

    def seen_count(self, feed_url: str) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT count(*) FROM seen WHERE feed_url = ?", (feed_url,)).fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
