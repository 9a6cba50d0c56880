"""WebSub subscriptions as stored state: a callback must still be known after a restart.

A hub keeps pushing to the callback it verified until the lease ends; losing the callback
id or secret at a restart would turn every push into a 410 and push off until the next
renewal. Rows live in the fetcher's database next to the feed state (same engine).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Engine

from newswatch.shared.db import transaction, upsert

#: The migration step that creates the table (appended to the fetcher's MIGRATIONS).
MIGRATION = [
    "CREATE TABLE fetcher_websub (feed_url VARCHAR(2048) PRIMARY KEY, hub VARCHAR(2048) NOT NULL, "
    "topic VARCHAR(2048) NOT NULL, callback_id VARCHAR(64) NOT NULL UNIQUE, secret VARCHAR(128) NOT NULL, "
    "state VARCHAR(16) NOT NULL, request VARCHAR(16), requested_at DOUBLE PRECISION, "
    "expires_at DOUBLE PRECISION, lease DOUBLE PRECISION, next_attempt DOUBLE PRECISION, "
    "failures INTEGER NOT NULL, last_error TEXT, pushed_at DOUBLE PRECISION)",
]

METADATA = MetaData()
WEBSUB = Table(
    "fetcher_websub",
    METADATA,
    Column("feed_url", String(2048), primary_key=True),
    Column("hub", String(2048), nullable=False),
    Column("topic", String(2048), nullable=False),
    Column("callback_id", String(64), nullable=False, unique=True),
    Column("secret", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("request", String(16)),  # the mode of the request awaiting verification, if any
    Column("requested_at", Float),
    Column("expires_at", Float),  # the lease's end, once verified
    Column("lease", Float),
    Column("next_attempt", Float),  # when a failed, denied or expired subscription is tried again
    Column("failures", Integer, nullable=False),
    Column("last_error", Text),
    Column("pushed_at", Float),
)


@dataclass(frozen=True)
class Subscription:
    feed_url: str
    hub: str
    topic: str
    callback_id: str
    secret: str
    state: str  # one of metrics.WEBSUB_STATES
    request: str | None = None
    requested_at: float | None = None
    expires_at: float | None = None
    lease: float | None = None
    next_attempt: float | None = None
    failures: int = 0
    last_error: str | None = None
    pushed_at: float | None = None

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"Subscription({self.feed_url!r}, hub={self.hub!r}, state={self.state!r})"


class WebSubStore:
    """Reads all rows once at start; every change is written through (few rows, rare changes)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self) -> list[Subscription]:
        with transaction(self._engine, "reading WebSub subscriptions") as conn:
            rows = conn.execute(select(WEBSUB)).mappings().all()
        return [Subscription(**row) for row in rows]

    def save(self, sub: Subscription) -> None:
        with transaction(self._engine, "saving a WebSub subscription") as conn:
            upsert(conn, WEBSUB, [sub.__dict__], ["feed_url"])

    def delete(self, feed_url: str) -> None:
        with transaction(self._engine, "deleting a WebSub subscription") as conn:
            conn.execute(delete(WEBSUB).where(WEBSUB.c.feed_url == feed_url))
