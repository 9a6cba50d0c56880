"""Processing one ``newswatch.matches`` record: route, dedup, deliver, record, publish.

Order per subscription: skip if already handled → POST (retried with backoff) →
publish the Alert to ``newswatch.alerts`` → record in the delivery log. Only after every
subscription is handled does the consumer loop commit the offset.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.store import DeliveryStore
from newswatch.notifier.webhook import post_webhook, webhook_payload
from newswatch.shared.config import NotifierSettings, SubscriptionConfig
from newswatch.shared.contract import ALERTS, MATCHES, Alert, Match, decode, encode
from newswatch.shared.errors import ContractError, NewswatchError
from newswatch.shared.kafka_io import Publisher, Record, dlq_record

log = logging.getLogger(__name__)


class StoppedError(NewswatchError):
    """Shutdown interrupted a retry; the record is left uncommitted for the next start."""


def alert_id_for(subscription_id: str, item_id: str) -> str:
    """Stable per (subscription, item): receivers dedup on it (sent as ``webhook-id``)."""
    return hashlib.sha256(f"{subscription_id}\x00{item_id}".encode()).hexdigest()[:32]


class MatchHandler:
    def __init__(
        self,
        subscriptions: Sequence[SubscriptionConfig],
        store: DeliveryStore,
        publisher: Publisher,
        client: httpx.Client,
        metrics: NotifierMetrics,
        settings: NotifierSettings,
        stop: threading.Event,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._routes: dict[str, list[SubscriptionConfig]] = {}
        for sub in subscriptions:
            for topic_id in sub.topics:
                self._routes.setdefault(topic_id, []).append(sub)
        self._store = store
        self._publisher = publisher
        self._client = client
        self._metrics = metrics
        self._settings = settings
        self._stop = stop
        self._now = now

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
        for sub in self._routes.get(match.topic_id, ()):
            if self._store.handled(sub.id, match.item.item_id):
                self._metrics.duplicates.inc()
                continue
            self._deliver(sub, match, message)

    def _deliver(self, sub: SubscriptionConfig, match: Match, message: Any) -> None:
        alert_id = alert_id_for(sub.id, match.item.item_id)
        body = webhook_payload(alert_id, sub.id, match, self._now())
        error = self._post_with_retries(sub.to, alert_id, body)
        if error is None:
            alert = Alert(
                alert_id=alert_id,
                subscription_id=sub.id,
                topic_id=match.topic_id,
                query=match.query,
                item=match.item,
                reason=match.reason,
                delivered_at=self._now(),
            )
            self._publisher.publish([Record(ALERTS, sub.id, encode(alert))])
            self._store.record(sub.id, match.item.item_id, alert_id, match.topic_id, "delivered")
            self._metrics.alerts_sent.labels("webhook").inc()
            log.info(
                "alert delivered",
                extra={
                    "subscription": sub.id,
                    "topic_id": match.topic_id,
                    "alert_id": alert_id,
                    "title": match.item.title,
                },
            )
            return
        record = dlq_record(message, error, "notifier")
        record.headers.append(("subscription_id", sub.id.encode()))
        self._publisher.publish([record])
        self._store.record(sub.id, match.item.item_id, alert_id, match.topic_id, "dead-lettered")
        self._metrics.alerts_failed.labels("webhook", error.reason).inc()
        self._metrics.pipeline.dlq.labels(MATCHES, "delivery").inc()
        log.error(
            "alert dead-lettered", extra={"subscription": sub.id, "alert_id": alert_id, "error": str(error)}
        )

    def _post_with_retries(self, url: str, alert_id: str, body: dict[str, Any]) -> DeliveryError | None:
        delay = self._settings.retry_backoff
        for attempt in range(1, self._settings.max_attempts + 1):
            started = time.perf_counter()
            try:
                post_webhook(self._client, url, alert_id, body)
            except DeliveryError as exc:
                self._metrics.attempts_failed.labels("webhook", exc.reason).inc()
                log.warning(
                    "delivery attempt failed",
                    extra={
                        "alert_id": alert_id,
                        "attempt": attempt,
                        "permanent": exc.permanent,
                        "error": str(exc),
                    },
                )
                if exc.permanent or attempt == self._settings.max_attempts:
                    return exc
                if self._stop.wait(delay):
                    raise StoppedError("stopping during a delivery retry") from exc
                delay = min(delay * 2, self._settings.retry_backoff_max)
            else:
                self._metrics.delivery_seconds.observe(time.perf_counter() - started)
                return None
        raise AssertionError("unreachable: max_attempts >= 1")
