"""The consumer side of the notifier: each ``newswatch.matches`` record is decoded and
routed to the subscriptions of its topic before its offset is committed.

A record that cannot be decoded goes to ``newswatch.dlq``. A database failure raises, so
the consumer loop rewinds and retries the record: a match is never committed unrouted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.router import Router
from newswatch.notifier.store import NotifierStore, Subscription
from newswatch.shared.contract import MATCHES, Match, decode
from newswatch.shared.errors import ContractError
from newswatch.shared.kafka_io import Publisher, dlq_record
from newswatch.shared.tracing import from_headers, trace_id

log = logging.getLogger(__name__)


class Routes:
    """topic id → its subscriptions, reloaded when the stored subscriptions change.

    Checked at most every ``every`` seconds, so a subscription added through another
    replica's API is routed to within that long.
    """

    def __init__(
        self, store: NotifierStore, every: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._version: tuple[int, float] | None = None
        self._by_topic: dict[str, list[Subscription]] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._checked = float("-inf")

    def for_topic(self, topic_id: str) -> list[Subscription]:
        with self._lock:
            if self._clock() - self._checked >= self._every:
                version = self._store.version()
                if version != self._version:
                    by_topic: dict[str, list[Subscription]] = {}
                    for sub in self._store.subscriptions():
                        for topic in sub.spec.topics:
                            by_topic.setdefault(topic, []).append(sub)
                    self._by_topic, self._version = by_topic, version
                self._checked = self._clock()
            return list(self._by_topic.get(topic_id, ()))


class MatchIntake:
    def __init__(
        self,
        routes: Routes,
        router: Router,
        publisher: Publisher,
        metrics: NotifierMetrics,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._routes = routes
        self._router = router
        self._publisher = publisher
        self._metrics = metrics
        self._wake = wake

    def __call__(self, message: Any) -> None:
        try:
            match = decode(Match, message.value)
        except ContractError as exc:
            self._publisher.publish([dlq_record(message, exc, "notifier")])
            self._metrics.pipeline.dlq.labels(MATCHES, "decode").inc()
            log.warning(
                "undecodable match sent to the DLQ", extra={"offset": message.offset, "error": str(exc)}
            )
            return
        self._metrics.matches_received.inc()
        parent = from_headers(message.headers)
        outcomes = self._router.route(match, self._routes.for_topic(match.topic_id), parent)
        for outcome in outcomes.values():
            self._metrics.routed.labels(outcome).inc()
            if outcome in ("duplicate", "repeat", "update_suppressed"):
                self._metrics.duplicates.inc()
        if outcomes:
            log.info(
                "match routed",
                extra={
                    "topic_id": match.topic_id,
                    "item_id": match.item.item_id,
                    "outcomes": outcomes,
                    "trace_id": trace_id(parent),
                },
            )
        if any(o in ("queued", "update") for o in outcomes.values()):
            self._wake()
