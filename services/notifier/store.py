"""The delivery log: which (subscription, item) pairs were delivered, persisted in SQLite.

Written after a delivery succeeds and before the Kafka offset is committed, so a restart
does not alert twice; a crash between the HTTP response and this write can repeat that
one alert, with the same ``webhook-id`` for the receiver to drop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from newswatch.shared.sqlite import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    subscription_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    topic_id TEXT NOT NULL,
    status TEXT NOT NULL,            -- 'delivered' or 'dead-lettered'
    delivered_at REAL NOT NULL,
    PRIMARY KEY (subscription_id, item_id)
);
"""


class DeliveryStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = open_sqlite(path, _SCHEMA, "notifier state")
        self._lock = threading.Lock()
        self._clock = clock

    def handled(self, subscription_id: str, item_id: str) -> bool:
        """True once this pair was delivered or dead-lettered."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM deliveries WHERE subscription_id = ? AND item_id = ?",
                (subscription_id, item_id),
            ).fetchone()
        return row is not None

    def record(self, subscription_id: str, item_id: str, alert_id: str, topic_id: str, status: str) -> None:
        """Remember the outcome; a dead-lettered alert is not retried on redelivery either."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
                (subscription_id, item_id, alert_id, topic_id, status, self._clock()),
            )

    def count(self, status: str = "delivered") -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM deliveries WHERE status = ?", (status,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
