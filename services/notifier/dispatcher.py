"""Sending what the router queued: concurrent sends, retries by time, per-destination circuits.

The outbox (``nw_deliveries``) is the record; this is its worker. Deliveries reach it two ways:
handed over by the intake right after the routing transaction that queued them (already
leased, so nothing else takes them), or claimed from the outbox when due (retries, digests,
a crashed replica's rows once their lease ran out). Sends run on one asyncio loop in a thread
of their own, with connections kept alive: up to ``notifier.senders`` in flight, at most
``notifier.per_destination`` to one destination, so a slow receiver holds its own slots and
never the others'. Their outcomes are recorded together, one transaction for all the sends
that finished meanwhile, before the sent alerts are published to ``newswatch.alerts``.

- delivered: recorded, then published;
- a transient failure: retried after an exponential backoff with full jitter (or the
  receiver's longer ``Retry-After``), within the retry budget ``notifier.max_age``: the last
  attempt is made at the budget's end, and a failure then abandons it (``expired``);
- failures in a row at one destination open its circuit (``destinations``): its deliveries
  wait for a probe instead of each trying (and burning its budget) against a receiver that
  is down, and go at once when the probe succeeds;
- a permanent failure (or ``notifier.max_attempts``, when set): marked dead at once with
  the reason (``GET /deliveries``) and copied to ``newswatch.dlq``.

A crash between a send and its record repeats at most the sends in flight, after their
lease, with the same ``webhook-id`` / Message-ID, so a receiver can drop them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from newswatch.notifier.channels import Channel
from newswatch.notifier.destinations import Destinations, destination_of
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.model import (
    Delivery,
    Outgoing,
    Report,
    Subscription,
    alert_id_for,
    channel_kind,
    payload_matches,
)
from newswatch.notifier.outbox import Outbox, Outcome
from newswatch.notifier.render import view
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import NotifierSettings
from newswatch.shared.contract import ALERTS, DLQ, DLQ_HEADERS, MATCHES, Alert, Match, encode
from newswatch.shared.db import StoreError
from newswatch.shared.errors import NewswatchError
from newswatch.shared.kafka_io import Record, Sink
from newswatch.shared.tracing import HEADER as TRACE_HEADER
from newswatch.shared.tracing import child, trace_id

log = logging.getLogger(__name__)

Subscriptions = Callable[[str], Subscription | None]


def backoff(attempt: int, settings: NotifierSettings, rng: random.Random) -> float:
    """Seconds before attempt ``attempt + 1``: full jitter over an exponential cap."""
    cap = min(settings.retry_backoff_max, settings.retry_backoff * 2 ** (attempt - 1))
    return rng.uniform(cap / 2, cap)


def retry_time(
    attempts: int, now: float, created_at: float, wait: float, settings: NotifierSettings
) -> float | None:
    """When to try again after ``attempts`` failed ones, or None when the budget is spent.

    The budget is ``max_age`` from the delivery's creation: a retry is never planned past
    it, so the last attempt falls at its end, whatever the backoff; ``max_attempts`` (when
    set) bounds the count as well.
    """
    if settings.max_attempts is not None and attempts >= settings.max_attempts:
        return None
    deadline = created_at + settings.max_age
    if now >= deadline:
        return None
    return min(now + wait, deadline)


@dataclass
class Budget:
    """How many deliveries the dispatcher takes directly, per destination (see ``budget``)."""

    room: int
    per_destination: int
    blocked: set[str]
    held: Counter[str] = field(default_factory=Counter)

    def take(self, destination: str) -> bool:
        if self.room <= 0 or destination in self.blocked or self.held[destination] >= self.per_destination:
            return False
        self.room -= 1
        self.held[destination] += 1
        return True


@dataclass(frozen=True)
class _Task:
    delivery: Delivery
    matches: list[Match] | None  # decoded already (handed over), or from the payload
    also: dict[str, list[Report]]


class Dispatcher:
    def __init__(
        self,
        store: Outbox,
        channels: Mapping[str, Channel],
        sink: Sink,
        metrics: NotifierMetrics,
        settings: NotifierSettings,
        subscriptions: Subscriptions,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._sink = sink
        self._metrics = metrics
        self._settings = settings
        self._subscriptions = subscriptions
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = wake  # asks the sender loop for another claim (room was freed)
        self._circuits = Destinations(
            settings.circuit_failures, settings.retry_backoff, settings.retry_backoff_max, self._rng
        )
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}  # alert id → destination, from hand-over/claim to its record
        self._by_destination: Counter[str] = Counter()
        self._outcomes: list[tuple[Outcome, list[Record], Callable[[], None]]] = []
        self._closing = False
        self._more = False  # the last claim may have left due rows for lack of room
        # Rows taken ahead of the senders, so a big backlog (a fan-out to thousands) is claimed
        # in a few large claims rather than one small claim per free slot; one destination may
        # hold half of them, so the others always find room.
        self.capacity = max(256, settings.senders * 32)
        self.held_per_destination = self.capacity // 2
        # A row taken is not taken again before its send has surely ended: twice the longest
        # a channel may take, plus a margin. Rows still waiting for a slot have their lease
        # extended (``claim``), however long the queue before them.
        self.lease = 2 * max(settings.timeout, settings.smtp.timeout) + 10.0
        self._leased_at = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="notifier-send", daemon=True)
        self._thread.start()
        self._started: set[str] = set()  # alert ids whose send began (they keep their lease on close)
        asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result()

    async def _setup(self) -> None:
        self._global = asyncio.Semaphore(self._settings.senders)
        self._per_destination: dict[str, asyncio.Semaphore] = {}
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._publishing: set[asyncio.Task[None]] = set()
        self._flusher = asyncio.create_task(self._flush_forever())

    # --- taking work (called from other threads) --------------------------------------

    def budget(self) -> Budget:
        """What a routing transaction may hand over directly: a snapshot, consumed as it routes."""
        with self._lock:
            if self._closing:
                return Budget(0, 0, set())
            return Budget(
                self.capacity - len(self._held),
                self.held_per_destination,
                self._circuits.blocked(),
                Counter(self._by_destination),
            )

    def hand_over(self, deliveries: Sequence[tuple[Delivery, Match]]) -> None:
        """Deliveries queued leased by a committed routing transaction: sent now."""
        if not deliveries:
            return
        try:
            also = self._store.also_reported_many(
                [(d.subscription_id, m.item.item_id) for d, m in deliveries]
            )
        except StoreError as exc:  # sent without the list; the row is the record either way
            log.warning("could not read also-reported stories", extra={"error": str(exc)})
            also = {}
        tasks = [
            _Task(d, [m], {m.item.item_id: also.get((d.subscription_id, m.item.item_id), [])})
            for d, m in deliveries
        ]
        self._start(tasks)

    def run_once(self) -> int:
        """Builds due digests, then claims due deliveries for the free room; returns sends started."""
        self.build_digests()
        return self.claim()

    def claim(self) -> int:
        """Claims due deliveries for the free room and starts them; returns how many."""
        now = self._clock.time()
        self._extend_leases(now)
        with self._lock:
            self._more = False
            if self._closing:
                return 0
            room = self.capacity - len(self._held)
            saturated = {d for d, n in self._by_destination.items() if n >= self.held_per_destination}
            blocked = self._circuits.blocked() | saturated
            probes = [d for d in self._circuits.probes_due(now) if self._by_destination[d] == 0]
        if room <= 0:
            with self._lock:
                self._more = True
            return 0
        rows = self._store.claim_due(
            room,
            self.lease,
            blocked=sorted(blocked),
            per_destination=self.held_per_destination,
            final_before=now - self._settings.max_age,
        )
        for destination in probes:  # one delivery of a waiting destination goes as its probe
            rows += self._store.claim_due(1, self.lease, only=destination)
        with self._lock:
            # Rows may be left for lack of room: claim again as soon as sends finish.
            self._more = bool(saturated) or len(rows) >= room
            rows = [r for r in rows if r.alert_id not in self._held]
        if not rows:
            return 0
        pairs = [(r.subscription_id, m.item.item_id) for r in rows for m in _matches(r.payload)]
        try:
            also = self._store.also_reported_many(pairs)
        except StoreError as exc:
            log.warning("could not read also-reported stories", extra={"error": str(exc)})
            also = {}
        tasks = []
        for row in rows:
            matches = _matches(row.payload)
            stories = {m.item.item_id: also.get((row.subscription_id, m.item.item_id), []) for m in matches}
            tasks.append(_Task(row, matches, stories))
        self._start(tasks)
        return len(tasks)

    def _extend_leases(self, now: float) -> None:
        """Every third of a lease, the rows still held (sending, or waiting for a slot) are
        leased again, so a long queue at a slow destination is never taken by another sender."""
        if now - self._leased_at < self.lease / 3:
            return
        self._leased_at = now
        with self._lock:
            held = [alert_id for alert_id in self._held if alert_id not in self._started]
        try:
            self._store.extend_lease(held, now + self.lease)
        except StoreError as exc:
            log.warning("could not extend the leases of held deliveries", extra={"error": str(exc)})

    def _start(self, tasks: list[_Task]) -> None:
        with self._lock:
            for task in tasks:
                destination = task.delivery.destination or ""
                self._held[task.delivery.alert_id] = destination
                self._by_destination[destination] += 1
        self._loop.call_soon_threadsafe(self._spawn, tasks)

    def _spawn(self, tasks: list[_Task]) -> None:
        for task in tasks:
            running = self._loop.create_task(self._deliver(task))
            self._tasks.add(running)
            running.add_done_callback(self._tasks.discard)

    # --- one delivery (on the loop) -------------------------------------------------------

    async def _deliver(self, task: _Task) -> None:
        delivery = task.delivery
        destination = delivery.destination or ""
        semaphore = self._per_destination.get(destination)
        if semaphore is None:
            semaphore = self._per_destination[destination] = asyncio.Semaphore(self._settings.per_destination)
        try:
            async with semaphore:
                now = self._clock.time()
                final = now >= delivery.created_at + self._settings.max_age
                with self._lock:
                    verdict = self._circuits.verdict(destination, now)
                if verdict == "wait" and not final:
                    # The destination is down: wait for its probe without an attempt (at most
                    # until the end of the budget, when the delivery gets its last attempt).
                    with self._lock:
                        until = max(self._circuits.wait_until(destination), now)
                    until = min(until, delivery.created_at + self._settings.max_age)
                    self._record(Outcome(delivery.alert_id, "wait", delivery.attempts, next_attempt_at=until))
                    return
                try:
                    async with self._global:
                        await self._attempt(task, destination)
                finally:
                    if verdict == "probe":
                        with self._lock:  # no answer came (no send, or cut short): probe again
                            self._circuits.released(destination)
        except Exception:  # a bug must not lose the row: it stays leased and comes back
            log.exception("delivery failed unexpectedly", extra={"alert_id": delivery.alert_id})
            self._forget([delivery.alert_id])

    async def _attempt(self, task: _Task, destination: str) -> None:
        delivery = task.delivery
        attempts = delivery.attempts + 1
        now = self._clock.time()
        sub = self._subscriptions(delivery.subscription_id)
        if sub is None or sub.status == "unsubscribed":
            why = "the subscription was deleted" if sub is None else "the recipient unsubscribed"
            self._give_up(delivery, attempts, "unsubscribed", why)
            return
        overdue = now - (delivery.created_at + self._settings.max_age)
        if overdue > self.lease:  # not sent in its budget at all (the notifier was down)
            self._give_up(
                delivery, attempts - 1, "expired", f"undelivered after {now - delivery.created_at:.0f}s"
            )
            return
        matches = task.matches if task.matches is not None else _matches(delivery.payload)
        if delivery.kind == "alert":
            alert_ids = [delivery.alert_id]
        else:  # each alert of a digest keeps the id it would have had on its own
            alert_ids = [alert_id_for(sub.id, m.item.item_id, m.item.revision) for m in matches]
        sent_at = datetime.fromtimestamp(now, UTC)
        out = Outgoing(
            message_id=delivery.alert_id,
            subscription_id=sub.id,
            to=sub.spec.to,
            secret=sub.secret,
            alert_ids=alert_ids,
            matches=matches,
            views=[view(m, task.also.get(m.item.item_id, [])) for m in matches],
            digest=delivery.kind == "digest",
            sent_at=sent_at,
            traceparent=child(delivery.traceparent) if delivery.traceparent else None,
        )
        channel = self._channels[delivery.channel]
        started = time.perf_counter()
        self._started.add(delivery.alert_id)
        try:
            await channel.send(out)
        except DeliveryError as exc:
            self._failed(delivery, destination, attempts, exc)
            return
        elapsed = time.perf_counter() - started
        with self._lock:
            recovered = self._circuits.succeeded(destination, self._clock.time())
        if recovered:
            log.info(
                "destination recovered; its waiting deliveries go now", extra={"destination": destination}
            )
            self._wake()

        def counted() -> None:
            self._metrics.send_seconds.labels(delivery.channel).observe(elapsed)
            self._metrics.deliveries.labels(delivery.channel, delivery.kind, "delivered").inc()
            self._metrics.alerts_sent.labels(delivery.channel).inc(len(matches))
            delivered_at = self._clock.time()
            for match in matches:
                self._metrics.latency.labels(delivery.channel).observe(
                    max(0.0, delivered_at - match.item.fetched_at.timestamp())
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

        self._record(
            Outcome(delivery.alert_id, "delivered", attempts),
            _alert_records(delivery, alert_ids, matches, sent_at),
            counted,
        )

    def _failed(self, delivery: Delivery, destination: str, attempts: int, exc: DeliveryError) -> None:
        kind = "permanent" if exc.permanent else "transient"
        self._metrics.attempts_failed.labels(delivery.channel, kind, exc.reason).inc()
        now = self._clock.time()
        if exc.permanent:  # the receiver answered: the destination is up, this address is wrong
            with self._lock:
                self._circuits.succeeded(destination, now)
            self._give_up(delivery, attempts, exc.reason, str(exc))
            return
        with self._lock:
            opened = self._circuits.failed(destination, now)
        if opened:
            log.warning(
                "destination failing; its deliveries wait for a probe",
                extra={"destination": destination, "error": str(exc)},
            )
        wait = backoff(attempts, self._settings, self._rng)
        if exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        when = retry_time(attempts, now, delivery.created_at, wait, self._settings)
        if when is None:
            spent = self._settings.max_attempts is not None and attempts >= self._settings.max_attempts
            reason = exc.reason if spent else "expired"
            message = str(exc) if spent else f"undelivered after {now - delivery.created_at:.0f}s: {exc}"
            self._give_up(delivery, attempts, reason, message)
            return
        self._record(
            Outcome(
                delivery.alert_id, "retry", attempts, next_attempt_at=when, failure=exc.reason, error=str(exc)
            )
        )
        log.warning(
            "delivery attempt failed; will retry",
            extra={
                "alert_id": delivery.alert_id,
                "attempt": attempts,
                "retry_in": round(when - now, 3),
                "error": str(exc),
            },
        )

    def _give_up(self, delivery: Delivery, attempts: int, reason: str, error: str) -> None:
        values = (error[:2000], f"DeliveryError:{reason}", MATCHES, -1, -1, "notifier")
        headers = [(name, str(value).encode()) for name, value in zip(DLQ_HEADERS, values, strict=True)]
        headers += [
            ("subscription_id", delivery.subscription_id.encode()),
            ("alert_id", delivery.alert_id.encode()),
        ]

        def counted() -> None:
            self._metrics.deliveries.labels(delivery.channel, delivery.kind, "dead").inc()
            self._metrics.pipeline.dlq.labels(MATCHES, "delivery").inc()
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

        self._record(
            Outcome(delivery.alert_id, "dead", attempts, failure=reason, error=error),
            [Record(DLQ, delivery.subscription_id, delivery.payload.encode(), headers)],
            counted,
        )

    # --- recording outcomes ------------------------------------------------------------------

    def _record(
        self, outcome: Outcome, records: list[Record] | None = None, after: Callable[[], None] = lambda: None
    ) -> None:
        """Queue an outcome for the next write (on the loop)."""
        self._outcomes.append((outcome, records or [], after))
        self._dirty.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Every outcome queued so far in one transaction, then their Kafka records."""
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            # On this thread, not a worker: this loop does the CPU work of the sends, and a
            # worker thread waiting for the GIL between each of its statements made a flush
            # of a dozen outcomes take 20-60 ms instead of 2.
            self._store.record([o for o, _r, _a in batch])
        except StoreError as exc:
            # Kept and written again shortly; if the database stays away the rows' leases
            # run out and they are sent again (same webhook-id): at-least-once.
            log.error(
                "delivery outcomes not recorded; retrying", extra={"count": len(batch), "error": str(exc)}
            )
            self._outcomes = batch + self._outcomes
            await asyncio.sleep(1.0)
            self._dirty.set()
            return
        # The next outcomes are written while these are published: a send that finished is
        # recorded within one database write, so a crash repeats hardly more than the sends
        # in flight (waiting for Kafka's acknowledgements here let dozens pile up unrecorded).
        publishing = asyncio.create_task(self._publish(batch))
        self._publishing.add(publishing)
        publishing.add_done_callback(self._publishing.discard)

    async def _publish(self, batch: list[tuple[Outcome, list[Record], Callable[[], None]]]) -> None:
        """The recorded outcomes' Kafka records (alerts, dead letters), then their metrics and logs."""
        records = [r for _o, rs, _a in batch for r in rs]
        if records:
            try:
                await asyncio.to_thread(self._sink.publish, records)
            except NewswatchError as exc:  # recorded already: the subscriber has it (or it is dead)
                alerts = sum(1 for r in records if r.topic == ALERTS)
                self._metrics.alert_publish_errors.inc(alerts)
                log.error(
                    "delivered alerts or dead letters not published",
                    extra={"records": len(records), "error": str(exc)},
                )
        for _o, _r, after in batch:
            after()
        self._forget([o.alert_id for o, _r, _a in batch])

    def _forget(self, alert_ids: Sequence[str]) -> None:
        with self._lock:
            for alert_id in alert_ids:
                self._started.discard(alert_id)
                destination = self._held.pop(alert_id, None)
                if destination is not None:
                    self._by_destination[destination] -= 1
                    if self._by_destination[destination] <= 0:
                        del self._by_destination[destination]
            more = self._more
        if more:
            self._wake()

    # --- digests, housekeeping ------------------------------------------------------------

    def build_digests(self) -> None:
        for subscription_id in self._store.due_digests():
            sub = self._subscriptions(subscription_id)
            to = sub.spec.to if sub is not None else "http://unsubscribed.invalid/"
            digest_id = "dg" + uuid.uuid4().hex[:30]
            count = self._store.take_digest(
                subscription_id, digest_id, channel_kind(to), destination_of(to, self._settings.smtp.host)
            )
            log.info(
                "digest queued",
                extra={"subscription": subscription_id, "digest_id": digest_id, "alerts": count},
            )

    def prune(self, retention: float) -> int:
        """Forgets stories older than the dedup window (at least a week: they also make
        redelivered matches harmless) and finished deliveries older than ``retention``."""
        now = self._clock.time()
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
        with self._lock:
            counts = self._circuits.counts(self._clock.time())
            in_flight = len(self._held)
        for state, count in counts.items():
            self._metrics.destination_state.labels(state).set(count)
        self._metrics.in_flight.set(in_flight)

    def idle(self) -> bool:
        """Nothing held: every delivery taken has its outcome recorded."""
        with self._lock:
            return not self._held

    def send_test(self, sub: Subscription, match: Match, timeout: float) -> None:
        """Sends ``match`` to ``sub`` now, as an alert, outside the outbox (the "send a test
        alert" button): no retry, no dedup, no circuit. Raises DeliveryError."""
        out = Outgoing(
            message_id="test" + uuid.uuid4().hex[:28],
            subscription_id=sub.id,
            to=sub.spec.to,
            secret=sub.secret,
            alert_ids=["test" + uuid.uuid4().hex[:28]],
            matches=[match],
            views=[view(match, [])],
            digest=False,
            sent_at=datetime.fromtimestamp(self._clock.time(), UTC),
        )
        channel = self._channels[channel_kind(sub.spec.to)]
        future = asyncio.run_coroutine_threadsafe(channel.send(out), self._loop)
        try:
            future.result(timeout=timeout)
        except TimeoutError as exc:
            future.cancel()
            raise DeliveryError(f"no answer within {timeout:g}s", permanent=False, reason="network") from exc

    def close(self, wait: float) -> None:
        """Lets sends in flight finish for up to ``wait`` seconds and records their outcomes.
        Deliveries taken but not started are given back, due at once, so a restart or another
        replica takes them without waiting for their lease; a send cut short keeps its lease."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        deadline = time.monotonic() + wait
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        with self._lock:
            unsent = [alert_id for alert_id in self._held if alert_id not in self._started]
        if unsent:
            try:
                self._store.release(unsent)
            except StoreError as exc:  # their lease runs out instead
                log.error(
                    "could not give back unsent deliveries", extra={"count": len(unsent), "error": str(exc)}
                )
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush()
        await asyncio.gather(*self._publishing, return_exceptions=True)
        self._flusher.cancel()
        for channel in self._channels.values():
            closer = getattr(channel, "aclose", None)
            if closer is not None:
                await closer()


def _matches(payload: str) -> list[Match]:
    return list(payload_matches(payload))


def _alert_records(
    delivery: Delivery, alert_ids: list[str], matches: list[Match], sent_at: datetime
) -> list[Record]:
    headers = [(TRACE_HEADER, child(delivery.traceparent).encode())] if delivery.traceparent else []
    return [
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
            headers,
        )
        for alert_id, match in zip(alert_ids, matches, strict=True)
    ]
