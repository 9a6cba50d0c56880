"""The fetcher's persistent state: per-feed HTTP validators and a bounded seen-set.

Stored through SQLAlchemy in SQLite (default) or PostgreSQL, so a restart never
re-publishes what Kafka already acknowledged. Items enter the seen-set only after their
acknowledgement, and validators are saved only after the poll's items are safe: a failed
publish is retried with a full (non-304) fetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sqlalchemy import Column, Float, MetaData, String, Table, Text, and_, delete, func, select
from sqlalchemy.engine import Engine

from newswatch.fetcher.http_fetch import Validators
from newswatch.shared.db import migrate, transaction, upsert

COMPONENT = "fetcher"
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE fetcher_feeds (url VARCHAR(2048) PRIMARY KEY, etag TEXT, last_modified TEXT, "
        "updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE fetcher_seen (feed_url VARCHAR(2048) NOT NULL, item_id VARCHAR(128) NOT NULL, "
        "seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (feed_url, item_id))",
        "CREATE INDEX fetcher_seen_by_age ON fetcher_seen (feed_url, seen_at)",
    ],
]

_meta = MetaData()
FEEDS = Table(
    "fetcher_feeds",
    _meta,
    Column("url", String(2048), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("updated_at", Float, nullable=False),
)
SEEN = Table(
    "fetcher_seen",
    _meta,
    Column("feed_url", String(2048), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("seen_at", Float, nullable=False),
)


class FetcherStore:
    def __init__(self, engine: Engine, keep_per_feed: int, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._keep = keep_per_feed
        self._clock = clock
        migrate(engine, COMPONENT, MIGRATIONS)

    def validators(self, url: str) -> Validators:
        with transaction(self._engine, "reading feed validators") as conn:
            row = conn.execute(select(FEEDS.c.etag, FEEDS.c.last_modified).where(FEEDS.c.url == url)).first()
        return Validators(row.etag, row.last_modified) if row else Validators()

    def save_validators(self, url: str, validators: Validators) -> None:
        row = {
            "url": url,
            "etag": validators.etag,
            "last_modified": validators.last_modified,
            "updated_at": self._clock(),
        }
        with transaction(self._engine, "saving feed validators") as conn:
            upsert(conn, FEEDS, [row], ["url"])

    def unseen(self, feed_url: str, item_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return set()
        seen: set[str] = set()
        with transaction(self._engine, "reading the seen-set") as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(SEEN.c.item_id).where(
                    and_(SEEN.c.feed_url == feed_url, SEEN.c.item_id.in_(chunk))
                )
                seen.update(conn.execute(query).scalars())
        return set(ids) - seen

    def mark_seen(self, feed_url: str, item_ids: Iterable[str]) -> None:
        """Remember ``item_ids`` and keep only the newest ``keep_per_feed`` ids of the feed."""
        now = self._clock()
        rows = [{"feed_url": feed_url, "item_id": i, "seen_at": now} for i in dict.fromkeys(item_ids)]
        newest = (
            select(SEEN.c.item_id)
            .where(SEEN.c.feed_url == feed_url)
            .order_by(SEEN.c.seen_at.desc())
            .limit(self._keep)
            .scalar_subquery()
        )
        with transaction(self._engine, "updating the seen-set") as conn:
            upsert(conn, SEEN, rows, ["feed_url", "item_id"])
            conn.execute(delete(SEEN).where(and_(SEEN.c.feed_url == feed_url, SEEN.c.item_id.not_in(newest))))

    def seen_count(self, feed_url: str) -> int:
        with transaction(self._engine, "counting the seen-set") as conn:
            return int(conn.execute(select(func.count()).where(SEEN.c.feed_url == feed_url)).scalar_one())

    def close(self) -> None:
        self._engine.dispose()
