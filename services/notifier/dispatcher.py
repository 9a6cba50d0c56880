"""Sending what the router queued: the outbox worker, its retries, and due digests.

A loop claims due rows of ``nw_deliveries`` (leased, so a crashed or slow replica's rows
come back), hands each to a pool of ``notifier.senders`` threads — a channel that hangs
holds one thread until its timeout, never the others — and records the outcome:

- delivered: the row is marked, then the alert(s) are published to ``newswatch.alerts``;
- a transient failure: retried after an exponential backoff with full jitter, or after
  the receiver's ``Retry-After`` when it asks for longer;
- a permanent failure, attempts exhausted, or older than ``notifier.max_age``: marked
  dead with the reason (visible in ``GET /deliveries``) and copied to ``newswatch.dlq``.

A crash between a send and its record repeats that one message after the lease, with the
same ``webhook-id`` / Message-ID, so a receiver can drop it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from newswatch.notifier.channels import Channel, Outgoing, channel_kind
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.render import view
from newswatch.notifier.router import alert_id_for
from newswatch.notifier.store import Delivery, NotifierStore
from newswatch.shared.config import NotifierSettings
from newswatch.shared.contract import ALERTS, DLQ, DLQ_HEADERS, MATCHES, Alert, Match, encode
from newswatch.shared.db import StoreError
from newswatch.shared.errors import NewswatchError
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.tracing import HEADER as TRACE_HEADER
from newswatch.shared.tracing import child, trace_id

log = logging.getLogger(__name__)


def backoff(attempt: int, settings: NotifierSettings, rng: random.Random) -> float:
    """Seconds before attempt ``attempt + 1``: full jitter over an exponential cap."""
    cap = min(settings.retry_backoff_max, settings.retry_backoff * 2 ** (attempt - 1))
    return rng.uniform(cap / 2, cap)


class Dispatcher:
    def __init__(
        self,
        store: NotifierStore,
        channels: Mapping[str, Channel],
        publisher: Publisher,
        metrics: NotifierMetrics,
        settings: NotifierSettings,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._publisher = publisher
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(settings.senders, thread_name_prefix="notifier-send")
        self._in_flight: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        # A claimed row is not claimed again before its send has surely ended (or its sender
        # died): twice the longest a channel may take, plus a margin for the database.
        self.lease = 2 * max(settings.timeout, settings.smtp.timeout) + 10.0

    def run_once(self) -> int:
        """Builds due digests, then starts sends for due deliveries; returns sends started."""
        self._build_digests()
        with self._lock:
            self._in_flight = {k: f for k, f in self._in_flight.items() if not f.done()}
            room = self._settings.senders * 2 - len(self._in_flight)
        if room <= 0:
            return 0
        started = 0
        for delivery in self._store.claim_due(room, self.lease):
            with self._lock:
                if delivery.alert_id in self._in_flight:
                    continue
                self._in_flight[delivery.alert_id] = self._pool.submit(self._attempt, delivery)
            started += 1
        return started

    def prune(self, retention: float) -> int:
        """Forgets stories older than the dedup window (at least a week: they also make
        redelivered matches harmless) and finished deliveries older than ``retention``."""
        now = self._clock()
        horizon = max(self._settings.duplicate_window, 7 * 86400.0)
        gone = self._store.prune(stories_before=now - horizon, log_before=now - retention)
        self._metrics.pruned.inc(gone)
        if gone:
            log.info("old notifier state pruned", extra={"rows": gone})
        return gone

    def refresh_gauges(self) -> None:
        depth = self._store.depth()
        self._metrics.outbox.set(depth["pending"])
        self._metrics.digest_queue.set(depth["digest"])

    def idle(self) -> bool:
        with self._lock:
            return all(f.done() for f in self._in_flight.values())

    def close(self, wait: float) -> None:
        """Lets sends in flight finish for up to ``wait`` seconds. Claimed rows whose send had
        not started are given back, due at once, so a restart or another replica takes them
        without waiting for their lease; a send still running keeps its lease."""
        deadline = time.monotonic() + wait
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            unsent = [alert_id for alert_id, future in self._in_flight.items() if future.cancelled()]
        try:
            self._store.release(unsent)
        except StoreError as exc:  # their lease runs out instead
            log.error(
                "could not give back unsent deliveries", extra={"count": len(unsent), "error": str(exc)}
            )

    def _build_digests(self) -> None:
        for subscription_id in self._store.due_digests():
            sub = self._store.subscription(subscription_id)
            channel = channel_kind(sub.spec.to) if sub is not None else "webhook"
            digest_id = "dg" + uuid.uuid4().hex[:30]
            count = self._store.take_digest(subscription_id, digest_id, channel)
            log.info(
                "digest queued",
                extra={"subscription": subscription_id, "digest_id": digest_id, "alerts": count},
            )

    def _attempt(self, delivery: Delivery) -> None:
        try:
            self._send(delivery)
        except StoreError as exc:  # the row stays leased, and is tried again after the lease
            log.error("delivery state not recorded", extra={"alert_id": delivery.alert_id, "error": str(exc)})
        except Exception:  # a bug must not kill the sender thread silently
            log.exception("delivery failed unexpectedly", extra={"alert_id": delivery.alert_id})

    def _send(self, delivery: Delivery) -> None:
        attempts = delivery.attempts + 1
        now = self._clock()
        sub = self._store.subscription(delivery.subscription_id)
        if sub is None:
            self._give_up(delivery, attempts, "unsubscribed", "the subscription was deleted")
            return
        if now - delivery.created_at > self._settings.max_age:
            self._give_up(
                delivery, attempts, "expired", f"undelivered after {now - delivery.created_at:.0f}s"
            )
            return
        matches = _matches(delivery)
        if delivery.kind == "alert":
            alert_ids = [delivery.alert_id]
        else:  # each alert of a digest keeps the id it would have had on its own
            alert_ids = [alert_id_for(sub.id, m.item.item_id, m.item.revision) for m in matches]
        also = self._store.also_reported(sub.id, [m.item.item_id for m in matches])
        sent_at = datetime.fromtimestamp(now, UTC)
        out = Outgoing(
            message_id=delivery.alert_id,
            subscription_id=sub.id,
            to=sub.spec.to,
            secret=sub.secret,
            alert_ids=alert_ids,
            matches=matches,
            views=[view(m, also.get(m.item.item_id, [])) for m in matches],
            digest=delivery.kind == "digest",
            sent_at=sent_at,
            traceparent=child(delivery.traceparent) if delivery.traceparent else None,
        )
        channel = self._channels[delivery.channel]
        started = time.perf_counter()
        try:
            channel.send(out)
        except DeliveryError as exc:
            self._failed(delivery, attempts, exc)
            return
        self._metrics.send_seconds.labels(delivery.channel).observe(time.perf_counter() - started)
        self._store.delivered(delivery.alert_id, attempts)
        self._metrics.deliveries.labels(delivery.channel, delivery.kind, "delivered").inc()
        self._metrics.alerts_sent.labels(delivery.channel).inc(len(matches))
        for match in matches:
            self._metrics.latency.labels(delivery.channel).observe(
                max(0.0, now - match.item.fetched_at.timestamp())
            )
        log.info(
            "delivered",
            extra={
                "alert_id": delivery.alert_id,
                "subscription": sub.id,
                "kind": delivery.kind,
                "channel": delivery.channel,
                "alerts": len(matches),
                "attempts": attempts,
                "trace_id": trace_id(delivery.traceparent),
            },
        )
        self._publish_alerts(delivery, alert_ids, matches, sent_at)

    def _failed(self, delivery: Delivery, attempts: int, exc: DeliveryError) -> None:
        kind = "permanent" if exc.permanent else "transient"
        self._metrics.attempts_failed.labels(delivery.channel, kind, exc.reason).inc()
        if exc.permanent or attempts >= self._settings.max_attempts:
            self._give_up(delivery, attempts, exc.reason, str(exc))
            return
        wait = backoff(attempts, self._settings, self._rng)
        if exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self._settings.max_age))
        self._store.retry_at(delivery.alert_id, attempts, self._clock() + wait, exc.reason, str(exc))
        log.warning(
            "delivery attempt failed; will retry",
            extra={
                "alert_id": delivery.alert_id,
                "attempt": attempts,
                "retry_in": round(wait, 3),
                "error": str(exc),
            },
        )

    def _give_up(self, delivery: Delivery, attempts: int, reason: str, error: str) -> None:
        self._store.dead(delivery.alert_id, attempts, reason, error)
        self._metrics.deliveries.labels(delivery.channel, delivery.kind, "dead").inc()
        self._metrics.pipeline.dlq.labels(MATCHES, "delivery").inc()
        values = (error[:2000], f"DeliveryError:{reason}", MATCHES, -1, -1, "notifier")
        headers = [(name, str(value).encode()) for name, value in zip(DLQ_HEADERS, values, strict=True)]
        headers += [
            ("subscription_id", delivery.subscription_id.encode()),
            ("alert_id", delivery.alert_id.encode()),
        ]
        try:
            self._publisher.publish(
                [Record(DLQ, delivery.subscription_id, delivery.payload.encode(), headers)]
            )
        except NewswatchError as exc:  # recorded as dead in the log already: nothing is lost
            log.error(
                "could not copy a dead delivery to the DLQ",
                extra={"alert_id": delivery.alert_id, "error": str(exc)},
            )
        log.error(
            "delivery abandoned",
            extra={
                "alert_id": delivery.alert_id,
                "subscription": delivery.subscription_id,
                "reason": reason,
                "error": error,
                "trace_id": trace_id(delivery.traceparent),
            },
        )

    def _publish_alerts(
        self, delivery: Delivery, alert_ids: list[str], matches: list[Match], sent_at: datetime
    ) -> None:
        records = [
            Record(
                ALERTS,
                delivery.subscription_id,
                encode(
                    Alert(
                        alert_id=alert_id,
                        subscription_id=delivery.subscription_id,
                        channel=delivery.channel,  # type: ignore[arg-type]  # one of CHANNELS
                        topic_id=match.topic_id,
                        query=match.query,
                        item=match.item,
                        reason=match.reason,
                        delivered_at=sent_at,
                        digest_id=delivery.alert_id if delivery.kind == "digest" else None,
                    )
                ),
                [(TRACE_HEADER, child(delivery.traceparent).encode())] if delivery.traceparent else [],
            )
            for alert_id, match in zip(alert_ids, matches, strict=True)
        ]
        try:
            self._publisher.publish(records)
        except NewswatchError as exc:  # delivered and recorded: the subscriber has it
            self._metrics.alert_publish_errors.inc(len(records))
            log.error("delivered alerts not published to newswatch.alerts", extra={"error": str(exc)})


def _matches(delivery: Delivery) -> list[Match]:
    if delivery.kind == "digest":
        return [Match.model_validate(entry) for entry in json.loads(delivery.payload)]
    return [Match.model_validate_json(delivery.payload)]
