"""The consumer side of the notifier: a poll's batch of ``newswatch.matches`` is routed to the
subscriptions of each match's topic, in one transaction, before the offsets are committed.

A record that cannot be decoded goes to ``newswatch.dlq`` (the consumer loop does that). A
database outage raises, so the loop rewinds and retries the batch: a match is never
committed unrouted. The deliveries the routing queued to send now are handed to the
dispatcher once the transaction committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from newswatch.notifier.activity import Activity
from newswatch.notifier.catalog import Catalog
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.model import Delivery, Subscription
from newswatch.notifier.router import Accepts, Incoming, Router
from newswatch.shared.contract import Match, decode
from newswatch.shared.db import StoreError
from newswatch.shared.kafka_io import Envelope, Message
from newswatch.shared.runtime import stall_point
from newswatch.shared.tracing import from_headers, trace_id

log = logging.getLogger(__name__)
_SUPPRESSED = ("duplicate", "repeat", "update_suppressed")


class Routes:
    """Stored subscriptions, by topic and by id, reloaded when they change.

    Checked at most every ``every`` seconds, so a subscription added through another
    replica's API is routed to within that long.
    """

    def __init__(
        self, store: Catalog, every: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._version: tuple[int, float] | None = None
        self._by_topic: dict[str, list[Subscription]] = {}
        self._by_id: dict[str, Subscription] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._checked = float("-inf")

    def _fresh(self) -> None:
        """Reloads if the stored subscriptions changed (called with the lock held)."""
        if self._clock() - self._checked < self._every:
            return
        version = self._store.version()
        if version != self._version:
            by_topic: dict[str, list[Subscription]] = {}
            subscriptions = self._store.subscriptions()
            for sub in subscriptions:
                if sub.status != "active":  # paused, or waiting for its address to confirm
                    continue
                for topic in sub.spec.topics:
                    by_topic.setdefault(topic, []).append(sub)
            self._by_topic, self._version = by_topic, version
            self._by_id = {s.id: s for s in subscriptions}
        self._checked = self._clock()

    def for_topic(self, topic_id: str) -> list[Subscription]:
        with self._lock:
            self._fresh()
            return list(self._by_topic.get(topic_id, ()))

    def subscription(self, subscription_id: str) -> Subscription | None:
        """A subscription as last loaded (a deleted one is gone within ``every`` seconds)."""
        with self._lock:
            self._fresh()
            return self._by_id.get(subscription_id)


class Handoff(Protocol):
    """Where routed deliveries to send now go (the dispatcher)."""

    def budget(self) -> Accepting: ...
    def hand_over(self, deliveries: Sequence[tuple[Delivery, Match]]) -> None: ...


class Accepting(Protocol):
    def take(self, destination: str) -> bool: ...


class MatchProcessor:
    """``kafka_io.Processor`` of ``newswatch.matches``."""

    def __init__(
        self,
        routes: Routes,
        router: Router,
        metrics: NotifierMetrics,
        handoff: Handoff | None = None,
        wake: Callable[[], None] = lambda: None,
        activity: Activity | None = None,
    ) -> None:
        self._routes = routes
        self._router = router
        self._metrics = metrics
        self._handoff = handoff
        self._activity = activity
        self._wake = wake  # the sender loop claims what was queued due (not handed over)

    def _subscribers(self, match: Match) -> list[Subscription]:
        """The subscriptions of the match's topic (of its one owner, for a backfill's match)."""
        subs = self._routes.for_topic(match.topic_id)
        return subs if match.for_owner is None else [s for s in subs if s.owner == match.for_owner]

    def decode(self, message: Message) -> Match:
        return decode(Match, message.value)

    def process(self, batch: Sequence[Envelope[Match]]) -> dict[int, BaseException]:
        stall_point("notifier.process")
        incoming = [
            Incoming(e.payload, self._subscribers(e.payload), from_headers(e.message.headers)) for e in batch
        ]
        accepts: Accepts | None = self._handoff.budget().take if self._handoff is not None else None
        results = (
            self._router.route_batch(incoming, accepts)
            if accepts is not None
            else self._router.route_batch(incoming)
        )
        handoff: list[tuple[Delivery, Match]] = []
        queued = 0
        for entry, routed in zip(incoming, results, strict=True):
            match = entry.match
            self._metrics.matches_received.inc()
            for outcome in routed.outcomes.values():
                self._metrics.routed.labels(outcome).inc()
                queued += outcome in ("queued", "update")
                if outcome in _SUPPRESSED:
                    self._metrics.duplicates.inc()
            if routed.outcomes:
                log.info(
                    "match routed",
                    extra={
                        "topic_id": match.topic_id,
                        "item_id": match.item.item_id,
                        "outcomes": routed.outcomes,
                        "trace_id": trace_id(entry.traceparent),
                    },
                )
            handoff += [(delivery, match) for delivery in routed.handoff]
        if handoff and self._handoff is not None:
            self._handoff.hand_over(handoff)
        if queued > len(handoff):
            self._wake()
        self._count(batch)
        return {}

    def _count(self, batch: Sequence[Envelope[Match]]) -> None:
        """Statistics for the web app: never worth failing (and retrying) a routed batch."""
        if self._activity is None:
            return
        try:
            self._activity.record(e.payload.topic_id for e in batch if e.payload.for_owner is None)
        except StoreError as exc:
            log.warning("could not count matches per topic", extra={"error": str(exc)})
