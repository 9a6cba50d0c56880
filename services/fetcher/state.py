"""The fetcher's persistent state: per-feed HTTP validators and a bounded seen-set.

Stored through SQLAlchemy in SQLite (default) or PostgreSQL, so a restart never
re-publishes what Kafka already acknowledged. Items enter the seen-set only after their
acknowledgement, and validators are saved only after the poll's items are safe: a failed
publish is retried with a full (non-304) fetch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    select,
    update,
)
from sqlalchemy.engine import Engine

from newswatch.fetcher.dedup import Known, Remember
from newswatch.fetcher.http_fetch import Validators
from newswatch.fetcher.pending import PendingBatch, Settled
from newswatch.fetcher.websub_store import MIGRATION as WEBSUB_MIGRATION
from newswatch.fetcher.websub_store import WEBSUB
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.contract import FeedDefinition, decode, encode
from newswatch.shared.db import insert_new, migrate, transaction, upsert
from newswatch.shared.errors import ContractError
from newswatch.shared.kafka_io import Ack

log = logging.getLogger(__name__)

COMPONENT = "fetcher"
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE fetcher_feeds (url VARCHAR(2048) PRIMARY KEY, etag TEXT, last_modified TEXT, "
        "updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE fetcher_seen (feed_url VARCHAR(2048) NOT NULL, item_id VARCHAR(128) NOT NULL, "
        "seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (feed_url, item_id))",
        "CREATE INDEX fetcher_seen_by_age ON fetcher_seen (feed_url, seen_at)",
    ],
    [
        "ALTER TABLE fetcher_seen ADD COLUMN content_hash VARCHAR(64) NOT NULL DEFAULT ''",
        "ALTER TABLE fetcher_seen ADD COLUMN revision INTEGER NOT NULL DEFAULT 1",
        "CREATE TABLE fetcher_urls (canonical_url VARCHAR(2048) PRIMARY KEY, item_id VARCHAR(128) NOT NULL, "
        "feed_url VARCHAR(2048) NOT NULL, also_in TEXT NOT NULL DEFAULT '', first_seen DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX fetcher_urls_by_age ON fetcher_urls (first_seen)",
    ],
    [
        "ALTER TABLE fetcher_feeds ADD COLUMN current_url VARCHAR(2048)",
        "ALTER TABLE fetcher_feeds ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE fetcher_feeds ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active'",
        "ALTER TABLE fetcher_feeds ADD COLUMN last_error TEXT",
        "ALTER TABLE fetcher_feeds ADD COLUMN polled_ok_at DOUBLE PRECISION",
        "UPDATE fetcher_feeds SET polled_ok_at = updated_at",
    ],
    ["ALTER TABLE fetcher_feeds ADD COLUMN body_hash VARCHAR(64)"],
    [
        "CREATE TABLE fetcher_pending (batch_id VARCHAR(64) PRIMARY KEY, feed_url VARCHAR(2048) NOT NULL, "
        "created_at DOUBLE PRECISION NOT NULL, floors TEXT NOT NULL, body TEXT NOT NULL)",
        "CREATE TABLE fetcher_item_offsets (item_partition INTEGER PRIMARY KEY, next_offset BIGINT NOT NULL)",
    ],
    [
        "CREATE TABLE fetcher_definitions (url VARCHAR(2048) PRIMARY KEY, body TEXT NOT NULL, "
        "updated_at DOUBLE PRECISION NOT NULL)",
    ],
    WEBSUB_MIGRATION,
]

#: Feed status values: polled normally; failing ``unhealthy_after`` times in a row (still
#: polled, at the maximum interval); answered 410 Gone (no longer polled).
STATUSES = ("active", "unhealthy", "gone")


#: What a completed poll saves of its feed: validators, the URL it moved to, the body's hash.
Success = tuple[Validators, str | None, str | None]


@dataclass(frozen=True)
class FeedState:
    url: str
    current_url: str
    validators: Validators
    failures: int
    status: str
    first_poll: bool
    body_hash: str = ""


_meta = MetaData()
FEEDS = Table(
    "fetcher_feeds",
    _meta,
    Column("url", String(2048), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("updated_at", Float, nullable=False),
    Column("current_url", String(2048)),
    Column("failures", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_error", Text),
    Column("polled_ok_at", Float),
    Column("body_hash", String(64)),
)
SEEN = Table(
    "fetcher_seen",
    _meta,
    Column("feed_url", String(2048), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("seen_at", Float, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
)
URLS = Table(
    "fetcher_urls",
    _meta,
    Column("canonical_url", String(2048), primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("feed_url", String(2048), nullable=False),
    Column("also_in", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
)


PENDING = Table(
    "fetcher_pending",
    _meta,
    Column("batch_id", String(64), primary_key=True),
    Column("feed_url", String(2048), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("floors", Text, nullable=False),
    Column("body", Text, nullable=False),
)
#: Per partition of newswatch.items, the offset after the last record this fetcher's
#: replicas saw acknowledged: a floor for records published later (see ``pending``).
ITEM_OFFSETS = Table(
    "fetcher_item_offsets",
    _meta,
    Column("item_partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)


#: The feed list's runtime changes (``newswatch.feeds`` definitions), the source of truth:
#: a broker that loses its data (the embedded one at every restart) gets them back from here.
DEFINITIONS = Table(
    "fetcher_definitions",
    _meta,
    Column("url", String(2048), primary_key=True),
    Column("body", Text, nullable=False),  # the FeedDefinition as published (JSON)
    Column("updated_at", Float, nullable=False),
)
#: Every table the migrations create (a test compares them with what the migrations make).
TABLES = (*_meta.sorted_tables, WEBSUB)


class FetcherStore:
    def __init__(
        self,
        engine: Engine,
        keep_per_feed: int,
        clock: Clock = SYSTEM,
        url_window: float = 7 * 86400.0,
    ) -> None:
        self._engine = engine
        self._keep = keep_per_feed
        self._clock = clock
        self._url_window = url_window
        self._cache_lock = threading.Lock()
        self._states: dict[str, FeedState] = {}
        migrate(engine, COMPONENT, MIGRATIONS)

    def feed_state(self, url: str) -> FeedState:
        """The feed's state, from memory after the first read.

        Each feed is polled by one fetcher replica only, and this store is that replica's
        only writer of its row, so the cached copy (updated on every write) is current.
        """
        with self._cache_lock:
            cached = self._states.get(url)
        if cached is not None:
            return cached
        state = self._read_state(url)
        with self._cache_lock:
            self._states[url] = state
        return state

    def _read_state(self, url: str) -> FeedState:
        with transaction(self._engine, "reading feed state") as conn:
            row = conn.execute(select(FEEDS).where(FEEDS.c.url == url)).first()
        if row is None:
            return FeedState(url, url, Validators(), 0, "active", True)
        return FeedState(
            url,
            row.current_url or url,
            Validators(row.etag, row.last_modified),
            row.failures,
            row.status,
            row.polled_ok_at is None,
            row.body_hash or "",
        )

    def record_success(
        self, url: str, validators: Validators, current_url: str | None = None, body_hash: str | None = None
    ) -> None:
        """A completed poll: validators (and the body's hash) saved, failures reset, status active.

        A repeat of the last recorded success (a 304, or the same bytes) writes nothing: that
        is most polls, and the write would only move timestamps.
        """
        if self.success_is_noop(url, validators, current_url, body_hash):
            return
        row, written = self._success(url, validators, current_url, body_hash)
        with transaction(self._engine, "saving feed state") as conn:
            upsert(conn, FEEDS, [row], ["url"])
        with self._cache_lock:  # what the row now holds: the next poll needs no read
            self._states[url] = written

    def _success(
        self, url: str, validators: Validators, current_url: str | None, body_hash: str | None
    ) -> tuple[dict[str, object], FeedState]:
        """The feed row of a completed poll, and the state it stands for."""
        current = self.feed_state(url)
        now = self._clock.time()
        row: dict[str, object] = {
            "url": url,
            "etag": validators.etag,
            "last_modified": validators.last_modified,
            "updated_at": now,
            "failures": 0,
            "status": "active",
            "last_error": None,
            "polled_ok_at": now,
        }
        if current_url is not None:
            row["current_url"] = current_url
        if body_hash is not None:
            row["body_hash"] = body_hash
        written = FeedState(
            url,
            current_url or current.current_url,
            validators,
            0,
            "active",
            False,
            current.body_hash if body_hash is None else body_hash,
        )
        return row, written

    def cached_state(self, url: str) -> FeedState | None:
        """The feed's state if it is in memory (no I/O: safe on the event loop)."""
        with self._cache_lock:
            return self._states.get(url)

    def success_is_noop(
        self, url: str, validators: Validators, current_url: str | None = None, body_hash: str | None = None
    ) -> bool:
        """Whether ``record_success`` with these values would write nothing (no I/O when cached)."""
        current = self.cached_state(url) or self.feed_state(url)
        return (
            not current.first_poll
            and current.failures == 0
            and current.status == "active"
            and current.validators == validators
            and current_url in (None, current.current_url)
            and body_hash in (None, current.body_hash)
        )

    def record_failure(self, url: str, error: str, status: str | None = None) -> FeedState:
        """Count one more failure in a row (and set ``status`` if given); returns the new state."""
        current = self.feed_state(url)
        row: dict[str, object] = {
            "url": url,
            "etag": current.validators.etag,
            "last_modified": current.validators.last_modified,
            "updated_at": self._clock.time(),
            "failures": current.failures + 1,
            "status": status or current.status,
            "last_error": error[:2000],
        }
        with transaction(self._engine, "saving feed state") as conn:
            upsert(conn, FEEDS, [row], ["url"])
        self._forget(url)
        return self.feed_state(url)

    def set_status(self, url: str, status: str) -> None:
        with transaction(self._engine, "saving feed state") as conn:
            conn.execute(update(FEEDS).where(FEEDS.c.url == url).values(status=status))
        self._forget(url)

    def _forget(self, url: str) -> None:
        """Drop the cached state after a write; the next read loads what the database holds."""
        with self._cache_lock:
            self._states.pop(url, None)

    def seen_state(self, feed_url: str, item_ids: Iterable[str]) -> dict[str, Known]:
        """Content hash and revision of the ids of ``item_ids`` already in the seen-set."""
        return self.known(feed_url, item_ids, ())[0]

    def url_owners(self, urls: Iterable[str]) -> dict[str, str]:
        """canonical URL → item id that published it (within the dedup window)."""
        return self.known("", (), urls)[1]

    def known(
        self, feed_url: str, item_ids: Iterable[str], urls: Iterable[str]
    ) -> tuple[dict[str, Known], dict[str, str]]:
        """What a poll needs to decide, in one read: the seen-set entries of ``item_ids`` of this
        feed (content hash, revision) and the owners of the canonical ``urls`` (item ids)."""
        ids = list(dict.fromkeys(item_ids))
        wanted = [u for u in dict.fromkeys(urls) if u]
        known: dict[str, Known] = {}
        owners: dict[str, str] = {}
        with transaction(self._engine, "reading the seen-set") as conn:
            for start in range(0, len(ids), 500):
                query = select(SEEN.c.item_id, SEEN.c.content_hash, SEEN.c.revision).where(
                    and_(SEEN.c.feed_url == feed_url, SEEN.c.item_id.in_(ids[start : start + 500]))
                )
                known.update(
                    {row.item_id: Known(row.content_hash, row.revision) for row in conn.execute(query)}
                )
            for start in range(0, len(wanted), 500):
                query = select(URLS.c.canonical_url, URLS.c.item_id).where(
                    URLS.c.canonical_url.in_(wanted[start : start + 500])
                )
                owners.update({row.canonical_url: row.item_id for row in conn.execute(query)})
        return known, owners

    def remember(
        self,
        feed_url: str,
        items: Iterable[Remember],
        claims: Iterable[tuple[str, str]] = (),
        also_in: Iterable[str] = (),
        *,
        pending: str | None = None,
        acked: Iterable[Ack] = (),
        success: Success | None = None,
    ) -> None:
        """Record a poll's outcome in one transaction, after Kafka acknowledged its items.

        The same transaction deletes the poll's ``pending`` batch and moves the offset
        floors past the ``acked`` records, so the journal and the seen-set never disagree;
        with ``success`` it also saves the feed's validators (``record_success``), so a poll
        that published costs one write after its publish.
        """
        feed_row = written = None
        if success is not None and not self.success_is_noop(feed_url, *success):
            feed_row, written = self._success(feed_url, *success)
        now = self._clock.time()
        floors: dict[int, int] = {}
        for ack in acked:
            floors[ack.partition] = max(floors.get(ack.partition, 0), ack.offset + 1)
        rows = {
            r.item_id: {
                "feed_url": feed_url,
                "item_id": r.item_id,
                "seen_at": now,
                "content_hash": r.content_hash,
                "revision": r.revision,
            }
            for r in items
        }
        newest = (
            select(SEEN.c.item_id)
            .where(SEEN.c.feed_url == feed_url)
            .order_by(SEEN.c.seen_at.desc())
            .limit(self._keep)
            .scalar_subquery()
        )
        with transaction(self._engine, "updating the seen-set") as conn:
            upsert(conn, SEEN, list(rows.values()), ["feed_url", "item_id"])
            conn.execute(delete(SEEN).where(and_(SEEN.c.feed_url == feed_url, SEEN.c.item_id.not_in(newest))))
            for canonical, item_id in dict(claims).items():
                insert_new(
                    conn,
                    URLS,
                    {
                        "canonical_url": canonical,
                        "item_id": item_id,
                        "feed_url": feed_url,
                        "also_in": "",
                        "first_seen": now,
                    },
                    ["canonical_url"],
                )
            for canonical in dict.fromkeys(also_in):
                owner = conn.execute(
                    select(URLS.c.also_in, URLS.c.feed_url).where(URLS.c.canonical_url == canonical)
                ).first()
                if (
                    owner is not None
                    and owner.feed_url != feed_url
                    and feed_url not in owner.also_in.split("\n")
                ):
                    sources = "\n".join(s for s in (*owner.also_in.split("\n"), feed_url) if s)
                    conn.execute(
                        update(URLS).where(URLS.c.canonical_url == canonical).values(also_in=sources)
                    )
            conn.execute(delete(URLS).where(URLS.c.first_seen < now - self._url_window))
            if pending is not None:
                conn.execute(delete(PENDING).where(PENDING.c.batch_id == pending))
            # Overwritten, not maximised: after a broker wipe offsets restart from 0 and a
            # floor must not stay above them. A lower floor is always safe (it reads more).
            upsert(
                conn,
                ITEM_OFFSETS,
                [{"item_partition": p, "next_offset": o} for p, o in sorted(floors.items())],
                ["item_partition"],
            )
            if feed_row is not None:
                upsert(conn, FEEDS, [feed_row], ["url"])
        if written is not None:
            with self._cache_lock:
                self._states[feed_url] = written

    def begin_pending(self, feed_url: str, batch: Callable[[dict[int, int]], PendingBatch]) -> PendingBatch:
        """Journal a batch before publishing it; ``batch`` is built from the current floors."""
        with transaction(self._engine, "journaling a publish") as conn:
            floors = {
                row.item_partition: row.next_offset
                for row in conn.execute(select(ITEM_OFFSETS.c.item_partition, ITEM_OFFSETS.c.next_offset))
            }
            pending = batch(floors)
            conn.execute(
                PENDING.insert().values(
                    batch_id=pending.batch_id,
                    feed_url=feed_url,
                    created_at=self._clock.time(),
                    floors=pending.floors_json(),
                    body=pending.to_json(),
                )
            )
        return pending

    def pending_batches(self) -> list[PendingBatch]:
        """Journaled batches not yet settled, oldest first."""
        query = select(PENDING).order_by(PENDING.c.created_at)
        with transaction(self._engine, "reading the publish journal") as conn:
            rows = list(conn.execute(query))
        return [PendingBatch.from_row(r.batch_id, r.feed_url, r.floors, r.body, r.created_at) for r in rows]

    def settle(self, batch: PendingBatch, settled: Settled) -> None:
        """Record what a journaled batch really published, and close it."""
        self.remember(
            batch.feed_url, settled.remember, settled.claims, settled.also_in, pending=batch.batch_id
        )

    def also_in(self, canonical_url: str) -> list[str]:
        """Feeds other than the first that carried ``canonical_url``."""
        with transaction(self._engine, "reading published URLs") as conn:
            value = conn.execute(select(URLS.c.also_in).where(URLS.c.canonical_url == canonical_url)).scalar()
        return [s for s in (value or "").split("\n") if s]

    def definitions(self) -> list[FeedDefinition]:
        """The stored runtime feed definitions (undecodable rows are logged and skipped)."""
        with transaction(self._engine, "reading feed definitions") as conn:
            rows = conn.execute(select(DEFINITIONS.c.url, DEFINITIONS.c.body)).all()
        found = []
        for url, body in rows:
            try:
                found.append(decode(FeedDefinition, body.encode()))
            except ContractError as exc:
                log.error(
                    "stored feed definition unreadable; skipped", extra={"feed": url, "error": str(exc)}
                )
        return found

    def keep_definitions(self, changes: dict[str, FeedDefinition | None]) -> None:
        """Stores definitions (None: forget the URL's); an older one never replaces a newer."""
        if not changes:
            return
        with transaction(self._engine, "storing feed definitions") as conn:
            stored = dict(
                conn.execute(
                    select(DEFINITIONS.c.url, DEFINITIONS.c.updated_at).where(
                        DEFINITIONS.c.url.in_(list(changes))
                    )
                ).all()
            )
            gone = [url for url, d in changes.items() if d is None]
            if gone:
                conn.execute(delete(DEFINITIONS).where(DEFINITIONS.c.url.in_(gone)))
            rows = [
                {"url": url, "body": encode(d).decode(), "updated_at": d.updated_at.timestamp()}
                for url, d in changes.items()
                if d is not None and d.updated_at.timestamp() >= stored.get(url, float("-inf"))
            ]
            if rows:
                upsert(conn, DEFINITIONS, rows, ["url"])

    def close(self) -> None:
        self._engine.dispose()
