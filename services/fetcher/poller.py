"""One poll of one feed: fetch → parse → normalize → decide → publish → remember.

This is the unit the scheduler runs per feed. Its steps are ordered so that a crash at any
point loses nothing: items are marked seen, and the poll recorded as complete, only after
Kafka acknowledged them. It returns what the scheduler needs to choose the next poll.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import httpx

from newswatch.fetcher.dedup import Decision, decide
from newswatch.fetcher.errors import FetchError, HttpStatusError
from newswatch.fetcher.http_fetch import PARSER_HEADERS, FetchResult, fetch
from newswatch.fetcher.isolated_parse import parse_feed_capped
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.normalize import feed_context, normalize_entry
from newswatch.fetcher.pending import PendingBatch, settle
from newswatch.fetcher.schedule import Hints, hints_from, observed_gap
from newswatch.fetcher.state import FeedState, FetcherStore, Success
from newswatch.fetcher.websub import Hub, discover
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import FetcherSettings
from newswatch.shared.contract import FEED_HEALTH, ITEMS, FeedHealth, Item, encode
from newswatch.shared.db import StoreError
from newswatch.shared.durations import parse_retry_after
from newswatch.shared.errors import PublishError
from newswatch.shared.health import Health
from newswatch.shared.kafka_io import PartialPublishError, Publisher, Record
from newswatch.shared.runtime import stall_point
from newswatch.shared.tracing import HEADER as TRACE_HEADER
from newswatch.shared.tracing import new_traceparent, trace_id

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class PollResult:
    outcome: str  # newswatch_fetcher_polls_total label
    status: str = "active"  # the feed's status after this poll
    failures: int = 0  # failures in a row after this poll
    gap: float | None = None  # observed seconds between entries
    hints: Hints = field(default_factory=Hints)
    retry_after: float | None = None
    hub: Hub | None = None  # the WebSub hub the document advertises (full polls only)
    published: int = 0  # new items published

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "not_modified", "unchanged")


class FeedPoller:
    """Fetches on the event loop; parses, publishes and records state in worker threads.

    The split keeps the event loop free for the many fetches in flight: everything that
    blocks (the state database, parsing, waiting for Kafka's acknowledgement) runs in
    ``workers``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        store: FetcherStore,
        publisher: Publisher,
        metrics: FetcherMetrics,
        settings: FetcherSettings,
        health: Health,
        workers: Executor | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._client = client
        self._store = store
        self._publisher = publisher
        self._metrics = metrics
        self._settings = settings
        self._health = health
        self._workers = workers
        self._clock = clock
        self._feed_locks: dict[str, asyncio.Lock] = {}

    def _feed_lock(self, url: str) -> asyncio.Lock:
        """One poll or push of a feed at a time: both read and write its seen-set and journal."""
        lock = self._feed_locks.get(url)
        if lock is None:
            lock = self._feed_locks[url] = asyncio.Lock()
        return lock

    def forget(self, url: str) -> None:
        self._feed_locks.pop(url, None)

    async def poll(self, url: str) -> PollResult:
        """Poll ``url`` once. Never raises: every failure is an outcome, counted and logged."""
        async with self._feed_lock(url):
            result = await self._outcome(url, self._poll(url))
        self._metrics.polls.labels(result.outcome).inc()
        return result

    async def push(self, url: str, body: bytes, headers: dict[str, str]) -> PollResult:
        """Content a WebSub hub pushed for ``url``: processed exactly as a polled body would be
        (parse, normalize, dedup, journal, publish). Never raises; counted by the caller."""
        async with self._feed_lock(url):
            return await self._outcome(url, self._pushed(url, body, headers))

    async def _pushed(self, url: str, body: bytes, headers: dict[str, str]) -> PollResult:
        cached = self._store.cached_state(url)
        state = cached if cached is not None else await self._blocking(self._store.feed_state, url)
        kept = {k: v for k, v in headers.items() if k in PARSER_HEADERS}
        fetched = FetchResult(200, state.current_url, body, kept, state.validators)
        try:
            return await self._blocking(self._process, url, state, fetched)
        except FetchError as exc:
            log.warning(
                "pushed content refused", extra={"feed": url, "outcome": exc.outcome, "error": str(exc)}
            )
            return PollResult(exc.outcome)

    async def _outcome(self, url: str, work: Coroutine[Any, Any, PollResult]) -> PollResult:
        try:
            return await work
        except PublishError as exc:
            self._health.set_not_ready(f"kafka: {exc}")
            log.error("publishing failed; the next poll retries", extra={"feed": url, "error": str(exc)})
            result = PollResult("publish_error")
        except StoreError as exc:
            # Items may be published but not yet remembered; their journal entry (if it was
            # written) is settled at the next start. Until then the next poll may publish
            # them again: downstream dedups by item id.
            self._health.set_not_ready(f"database: {exc}")
            log.error("state database failed; the next poll retries", extra={"feed": url, "error": str(exc)})
            result = PollResult("store_error")
        return result

    async def _blocking(self, func: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._workers, functools.partial(func, *args))

    async def _poll(self, url: str) -> PollResult:
        cached = self._store.cached_state(url)
        state = cached if cached is not None else await self._blocking(self._store.feed_state, url)
        try:
            with self._metrics.fetch_duration.time():
                fetched = await fetch(self._client, state.current_url, state.validators, self._settings)
        except FetchError as exc:
            return await self._blocking(self._failed, url, exc)
        if (
            fetched.not_modified
            and fetched.moved_to in (None, state.current_url)
            and self._store.cached_state(url) is state
            and self._store.success_is_noop(url, state.validators)
        ):
            return PollResult("not_modified")  # the common case: nothing to record, no thread needed
        try:
            return await self._blocking(self._process, url, state, fetched)
        except FetchError as exc:  # the body was not a feed, or too costly to parse
            return await self._blocking(self._failed, url, exc)

    def _process(self, url: str, state: FeedState, fetched: FetchResult) -> PollResult:
        if fetched.moved_to and fetched.moved_to != state.current_url:
            log.warning(
                "feed moved permanently; polling the new URL", extra={"feed": url, "to": fetched.moved_to}
            )
        recovered = state.status == "unhealthy"
        if fetched.not_modified:
            self._store.record_success(url, state.validators, fetched.moved_to)
            self._recovered(url, recovered)
            return PollResult("not_modified")
        stall_point("fetcher.process")
        self._metrics.bytes.inc(len(fetched.body))
        body_hash = hashlib.sha256(fetched.body).hexdigest()
        if body_hash == state.body_hash:  # same bytes as the last complete poll: nothing new to parse
            self._store.record_success(url, fetched.validators, fetched.moved_to)
            self._recovered(url, recovered)
            return PollResult("unchanged")
        parsed = parse_feed_capped(
            fetched.body,
            fetched.content_type,
            fetched.url,
            self._settings.max_body_bytes,
            fetched.headers,
            self._settings.parse_timeout,
            self._settings.isolate_parse_above,
        )
        fetched_at = self._clock.now()
        items: dict[str, Item] = {}
        context = feed_context(url, parsed.title, parsed.link, parsed.language, parsed.entries, parsed.base)
        for entry in parsed.entries:
            item = normalize_entry(entry, context, fetched_at)
            items.setdefault(item.item_id, item)
        self._metrics.items_fetched.inc(len(parsed.entries))
        self._metrics.items_duplicate.labels("same_feed").inc(len(parsed.entries) - len(items))
        seen, owners = self._store.known(url, items, (i.canonical_url for i in items.values()))
        decision = decide(
            list(items.values()),
            seen,
            owners,
            state.first_poll,
            fetched_at,
            timedelta(seconds=self._settings.backfill),
            self._settings.backfill_max_items,
        )
        success = (fetched.validators, fetched.moved_to, body_hash)
        if decision.publish:
            self._publish(url, decision, success)
            self._health.set_ready()
            log.info(
                "published items",
                extra={"feed": url, "new": decision.counts["new"], "updated": decision.counts["updated"]},
            )
        elif decision.remember:
            self._store.remember(url, decision.remember, decision.claims, decision.also_in, success=success)
        else:
            self._store.record_success(url, *success)
        self._recovered(url, recovered)
        self._metrics.items_published.inc(decision.counts["new"])
        self._metrics.items_updated.inc(decision.counts["updated"])
        self._metrics.items_duplicate.labels("seen").inc(decision.counts["seen"])
        self._metrics.items_duplicate.labels("same_url").inc(decision.counts["same_url"])
        self._metrics.items_backfill_skipped.inc(decision.counts["backfill"])
        published = [i.published for i in items.values() if i.published and "date_missing" not in i.flags]
        feed_meta = {k: v for k, v in parsed.meta.items() if isinstance(k, str)}
        hints = hints_from(feed_meta, fetched.body, fetched.headers.get("cache-control", ""))
        hub = discover(fetched.headers.get("link", ""), feed_meta.get("links"), fetched.url)
        return PollResult(
            "ok", gap=observed_gap(published), hints=hints, hub=hub, published=decision.counts["new"]
        )

    def _publish(self, url: str, decision: Decision, success: Success) -> None:
        """Journal, publish, then remember in the transaction that closes the journal entry
        (and saves the feed's validators): one publish and one write after it per poll.

        A kill between Kafka's acknowledgement and the seen-set write leaves the journal
        entry, which the next start settles (``recovery``): nothing is published twice. A
        publish that fails part-way remembers the acknowledged records, so the next poll
        resends only the rest.
        """
        batch = self._store.begin_pending(
            url, lambda floors: PendingBatch.of(uuid.uuid4().hex, url, floors, decision)
        )
        traces = [new_traceparent() for _ in decision.publish]
        records = [
            Record(ITEMS, item.item_id, encode(item), [(TRACE_HEADER, trace.encode())])
            for item, trace in zip(decision.publish, traces, strict=True)
        ]
        try:
            acked = self._publisher.publish(records)
        except PartialPublishError as exc:
            found = {batch.publish[i] for i in exc.acked}
            self._store.settle(batch, settle(batch, found))
            raise
        self._store.remember(
            url,
            decision.remember,
            decision.claims,
            decision.also_in,
            pending=batch.batch_id,
            acked=acked,
            success=success,
        )
        for item, trace in zip(decision.publish, traces, strict=True):
            log.debug(
                "item published", extra={"item_id": item.item_id, "trace_id": trace_id(trace), "feed": url}
            )

    def _failed(self, url: str, exc: FetchError) -> PollResult:
        gone = isinstance(exc, HttpStatusError) and exc.status == 410
        retry_after = None
        if isinstance(exc, HttpStatusError) and exc.status in (429, 503):
            retry_after = parse_retry_after(exc.retry_after, self._clock.now())
        before = self._store.feed_state(url).status
        status = "gone" if gone else None
        state = self._store.record_failure(url, str(exc), status)
        if not gone and state.failures >= self._settings.unhealthy_after and before == "active":
            self._store.set_status(url, "unhealthy")
            state = self._store.feed_state(url)
        log.warning(
            "poll failed",
            extra={"feed": url, "outcome": exc.outcome, "failures": state.failures, "error": str(exc)},
        )
        if state.status != before:
            self._announce(url, state.status, state.failures, str(exc))
        return PollResult(exc.outcome, state.status, state.failures, retry_after=retry_after)

    def _recovered(self, url: str, was_unhealthy: bool) -> None:
        if was_unhealthy:
            self._announce(url, "active", 0, "")

    def _announce(self, url: str, status: str, failures: int, error: str) -> None:
        """Log and publish a health change (best effort: the poll result stands either way)."""
        level = logging.INFO if status == "active" else logging.ERROR
        log.log(level, "feed health changed", extra={"feed": url, "status": status, "failures": failures})
        event = FeedHealth.model_validate(
            {
                "feed_url": url,
                "status": status,
                "failures": failures,
                "error": error[:2000],
                "at": self._clock.now(),
            }
        )
        try:
            self._publisher.publish([Record(FEED_HEALTH, url, encode(event))])
        except PublishError as exc:
            log.error("could not publish the feed-health event", extra={"feed": url, "error": str(exc)})
