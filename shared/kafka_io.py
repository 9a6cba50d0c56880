"""The stream layer: Kafka I/O with the guarantees the pipeline relies on.

Services see Kafka through two small Protocols, ``Consumer`` and ``Producer``. The
kafka-python adapter (``kafka_client``) and an in-memory backend (``kafka_memory``, for fast
unit tests) implement them, and one contract suite (``tests/contract``) holds both to the
behaviour below. Nothing here imports kafka-python.

- ``Publisher``: sends every record of a batch, then waits for all the acknowledgements
  (one round trip per batch, not per record). A failed send closes and rebuilds the
  producer (an idempotent producer can stay broken after a broker restart while ``flush()``
  says nothing) and retries the unacknowledged records, a bounded number of times.
- ``ConsumerLoop``: at-least-once, a poll's batch at a time. Each record is decoded by the
  ``Processor``; a record that cannot be decoded is poison and goes to ``newswatch.dlq`` alone.
  The decoded records go to ``Processor.process`` together; when it returns, their effects
  are done and the loop commits once. A record that failed rewinds its partition to it (the
  records after it that were done are not handed over again); an outage (a transient error:
  broker, database) is retried for as long as it lasts; any other failure of one record is
  retried with backoff ``kafka.record_attempts`` times, then that record is dead-lettered
  with its error, so a partition never stalls forever on one record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import DLQ, DLQ_HEADERS
from newswatch.shared.errors import (
    KafkaCommitError,
    KafkaUnavailableError,
    NewswatchError,
    PublishError,
    is_transient,
)
from newswatch.shared.metrics import PipelineMetrics

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record, whatever the backend."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp: int = 0  # milliseconds since the epoch, as the producer stamped it

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class Record:
    """One record to publish."""

    topic: str
    key: str | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Ack:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int


# --- the backend Protocols -------------------------------------------------------------------


class Consumer(Protocol):
    """What the services need of a Kafka consumer (a group member, or a groupless reader)."""

    def subscribe(self, topics: Sequence[str]) -> None: ...
    def assign(self, partitions: Sequence[TopicPartition]) -> None: ...
    def assignment(self) -> set[TopicPartition]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        """Records fetched now, per partition, in offset order; KafkaUnavailableError."""

    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...
    def position(self, partition: TopicPartition) -> int | None:
        """The next offset to fetch, or None when unknown (never raises)."""

    def highwater(self, partition: TopicPartition) -> int | None:
        """The end of the log as the last fetch saw it, or None (never raises, no request)."""

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the group's offsets; KafkaCommitError."""

    def topic_id(self, topic: str) -> object | None:
        """The broker's id of ``topic`` (changes when the topic is recreated), or None."""

    def close(self) -> None: ...


class SendFuture(Protocol):
    def get(self, timeout: float) -> Ack:
        """Where the record was stored; KafkaSendError if it was not acknowledged."""


class Producer(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> SendFuture:
        """Queue one record; KafkaSendError if it cannot even be queued."""

    def close(self, timeout: float) -> None:
        """Close, even with records that cannot be delivered (never raises)."""


class Sink(Protocol):
    """What a handler publishes through (``Publisher``, or any test double)."""

    def publish(self, records: Sequence[Record]) -> list[Ack]: ...


# --- publishing ------------------------------------------------------------------------------


class PartialPublishError(PublishError):
    """Some records were acknowledged before the publish failed: ``acked`` maps their indexes.

    A caller that records what it sent (the fetcher's seen-set) keeps the acknowledged ones
    and retries only the rest, instead of publishing them twice.
    """

    def __init__(self, message: str, acked: dict[int, Ack]) -> None:
        super().__init__(message)
        self.acked = acked


class Publisher:
    """Sends records and waits for every acknowledgement. Thread-safe."""

    def __init__(
        self,
        factory: Callable[[], Producer],
        metrics: PipelineMetrics,
        send_timeout: float,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._factory = factory
        self._metrics = metrics
        self._send_timeout = send_timeout
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def _current(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = self._factory()
            return self._producer

    def _rebuild(self, broken: Producer) -> None:
        with self._lock:
            if self._producer is not broken:
                return  # another thread already replaced it
            self._producer = None
        self._metrics.producer_rebuilds.inc()
        broken.close(timeout=1)

    def publish(self, records: Sequence[Record]) -> list[Ack]:
        """Publish all records and return where each one was stored, in order.

        Every record is sent before the first acknowledgement is awaited, so a batch costs
        one round trip. Raises PartialPublishError (a PublishError) naming the records that
        were acknowledged when some were not, after the bounded retries.
        """
        if not records:
            return []
        pending = list(enumerate(records))
        acked: dict[int, Ack] = {}
        last_error = ""
        for attempt in range(1, self._attempts + 1):
            try:
                producer = self._current()
            except KafkaUnavailableError as exc:
                last_error = str(exc)
            else:
                pending, last_error = self._send_all(producer, pending, acked)
                if not pending:
                    return [acked[i] for i in range(len(records))]
                self._rebuild(producer)
            if attempt < self._attempts:
                self._sleep(self._backoff * 2 ** (attempt - 1))
        raise PartialPublishError(
            f"{len(pending)} record(s) not acknowledged after {self._attempts} attempts: {last_error}", acked
        )

    def _send_all(
        self, producer: Producer, records: list[tuple[int, Record]], acked: dict[int, Ack]
    ) -> tuple[list[tuple[int, Record]], str]:
        futures: list[tuple[int, Record, SendFuture]] = []
        failed: list[tuple[int, Record]] = []
        error = ""
        for index, record in records:
            try:
                key = record.key.encode("utf-8") if record.key is not None else None
                futures.append(
                    (index, record, producer.send(record.topic, key, record.value, record.headers))
                )
            except PublishError as exc:
                failed.append((index, record))
                error = str(exc)
                self._metrics.publish_errors.labels(record.topic).inc()
        for index, record, future in futures:
            try:
                acked[index] = future.get(timeout=self._send_timeout)
            except PublishError as exc:
                failed.append((index, record))
                error = str(exc)
                self._metrics.publish_errors.labels(record.topic).inc()
            else:
                self._metrics.published.labels(record.topic).inc()
        failed.sort(key=lambda pair: pair[0])
        return failed, error

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)


def dlq_record(message: Message, error: BaseException, service: str) -> Record:
    """The DLQ copy of a consumed message: original key, value and headers, the error in
    headers of its own (``DLQ_HEADERS``)."""
    text = str(error) if isinstance(error, NewswatchError) else f"{type(error).__name__}: {error}"
    values = (
        text[:2000],
        type(error).__name__,
        message.topic,
        message.partition,
        message.offset,
        service,
    )
    headers = [(name, str(value).encode("utf-8")) for name, value in zip(DLQ_HEADERS, values, strict=True)]
    headers += [(name, value) for name, value in message.headers if name not in DLQ_HEADERS]
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    return Record(DLQ, key, message.value, headers)


# --- noticing a broker that lost its data ------------------------------------------------------


def rewind_past_end(consumer: Consumer, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
    """Seeks to the beginning every partition whose position lies past its highwater.

    That happens when the broker lost its data and restarted its offsets at 0. Kafka resets
    such a fetch by itself (auto_offset_reset); not every broker does, and a reader left
    there would skip the records published after the loss. Returns the partitions rewound.
    """
    beyond = []
    for tp in partitions:
        high = consumer.highwater(tp)
        if high is None:
            continue
        position = consumer.position(tp)
        if position is not None and position > high:
            beyond.append(tp)
    if beyond:
        log.warning(
            "position past the end of the log (the broker lost its data): reading from the start",
            extra={"partitions": [f"{tp.topic}/{tp.partition}" for tp in beyond]},
        )
        consumer.seek_to_beginning(*beyond)
    return beyond


class LossGuard:
    """Notices that the broker lost a topic's log, so a reader starts it again from offset 0.

    A broker that restarts empty (the embedded one keeps nothing) recreates each topic under
    a new topic id, with offsets from 0 again. A reader still positioned at its old offset
    would skip every record published after the loss until the new log grows past that
    offset, or, once it has, read from the middle. Two signs are checked before a batch is
    handed on: the topic id changed (the topic was recreated), or the position lies past the
    highwater (see ``rewind_past_end``). Either way the partition is sought to its beginning
    and the batch's records from it are dropped: they are read again, in order, from 0.
    """

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._ids: dict[str, object] = {}

    def recreated(self, topics: Iterable[str]) -> set[str]:
        """The topics among ``topics`` whose topic id changed since the last call."""
        changed = set()
        for topic in topics:
            current = self._consumer.topic_id(topic)
            if current is None:  # not (yet) in the metadata, e.g. while it is recreated
                continue
            prior = self._ids.get(topic)
            if prior is not None and prior != current:
                changed.add(topic)
            self._ids[topic] = current
        return changed

    def check(self, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        """Rewinds the partitions whose log was lost; returns them."""
        parts = list(partitions)
        changed = self.recreated({tp.topic for tp in parts})
        lost = [tp for tp in parts if tp.topic in changed]
        if lost:
            log.warning(
                "topic recreated (the broker lost its data): reading it from the start",
                extra={"partitions": [f"{tp.topic}/{tp.partition}" for tp in lost]},
            )
            self._consumer.seek_to_beginning(*lost)
        return {*lost, *rewind_past_end(self._consumer, [tp for tp in parts if tp.topic not in changed])}


# --- the consumer loop -----------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Envelope(Generic[T]):
    """A consumed record and what its Processor decoded from it."""

    message: Message
    payload: T


class Processor(Protocol[T]):
    """One service's work on a stream: decode each record, then process a batch of them."""

    def decode(self, message: Message) -> T:
        """The record's payload; any exception makes the record poison (dead-lettered alone)."""

    def process(self, batch: Sequence[Envelope[T]]) -> Mapping[int, BaseException]:
        """Do the effects of ``batch`` and return only when they are done; returns the records
        that failed, by index, with their error (their effects are not done). Effects happen
        in partition order: after a failed record, the later records of its partition are
        left undone too (``NotReached``, see ``in_order``). Raising means none of the batch is
        done: a transient error is waited out, any other is narrowed down by processing the
        records one at a time."""


@dataclass(frozen=True)
class LoopPolicy:
    """Bounds of a batch and of the retries (from ``kafka.*`` settings)."""

    max_records: int = 500
    max_bytes: int = 8 * 1024 * 1024
    record_attempts: int = 5  # failures of one record before it is dead-lettered
    retry_backoff: float = 1.0
    retry_backoff_max: float = 30.0
    poll_timeout_ms: int = 500


def loop_policy(settings: KafkaSettings, poll_timeout_ms: int = 500) -> LoopPolicy:
    return LoopPolicy(
        max_records=settings.batch_max_records,
        max_bytes=settings.batch_max_bytes,
        record_attempts=settings.record_attempts,
        retry_backoff=settings.retry_backoff,
        retry_backoff_max=settings.retry_backoff_max,
        poll_timeout_ms=poll_timeout_ms,
    )


@dataclass
class _Slot:
    """One record of a batch on its way through the loop."""

    message: Message
    done: bool = False
    skipped: bool = False  # done in an earlier pass (after a failed neighbour)
    error: BaseException | None = None
    index: int = -1  # position in the batch handed to the processor


class ConsumerLoop(Generic[T]):
    """Polls a group consumer and hands each poll's records to ``processor`` (see module doc)."""

    def __init__(
        self,
        consumer: Consumer,
        processor: Processor[T],
        sink: Sink,
        metrics: PipelineMetrics,
        service: str,
        policy: LoopPolicy | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._processor = processor
        self._sink = sink
        self._metrics = metrics
        self._service = service
        self._policy = policy or LoopPolicy()
        self._sleep = sleep
        self._clock = clock
        self._failures = 0  # runs in a row that retried something
        self._attempts: dict[tuple[TopicPartition, int], int] = {}
        # Records whose effect is done but whose offset cannot be committed yet (an earlier
        # record of the partition failed): not handed over again when they are redelivered.
        self._done: dict[TopicPartition, set[int]] = {}
        self._assigned: set[TopicPartition] = set()
        self._guard = LossGuard(consumer)
        self.last_poll = 0.0

    def run_once(self) -> int:
        """One poll → process → commit cycle. Returns the number of records polled."""
        policy = self._policy
        fetched = self._consumer.poll(policy.poll_timeout_ms, policy.max_records)
        self.last_poll = self._clock()
        assignment = self._consumer.assignment()
        self._forget_revoked(assignment)
        lost = self._guard.check(assignment)
        batch = self._bounded({tp: msgs for tp, msgs in fetched.items() if msgs and tp not in lost})
        retried = False
        if batch:
            retried = self._handle(batch)
            # A batch fetched just before the broker lost its data may be handled after it
            # came back empty: committing its offsets would place the group past records of
            # the new log. The guard is asked again; a recreated topic's offsets are kept.
            lost = self._guard.check(self._consumer.assignment())
            offsets = {tp: off for tp, off in self._commit_points(batch).items() if tp not in lost}
            if offsets:
                self._commit(offsets)
        self._update_lag()
        if retried:
            self._failures += 1
            self._sleep(min(policy.retry_backoff * 2 ** (self._failures - 1), policy.retry_backoff_max))
        else:
            self._failures = 0
        return sum(len(m) for m in fetched.values())

    # -- one batch ------------------------------------------------------------------------

    def _bounded(self, fetched: dict[TopicPartition, list[Message]]) -> dict[TopicPartition, list[_Slot]]:
        """The records to handle now: at most ``max_records`` and ``max_bytes`` (at least one);
        partitions cut short are sought back to their first record left out."""
        policy = self._policy
        batch: dict[TopicPartition, list[_Slot]] = {}
        count = size = 0
        for tp, messages in fetched.items():
            done = self._done.get(tp, set())
            taken: list[_Slot] = []
            for message in messages:
                if count and (count >= policy.max_records or size + message.size > policy.max_bytes):
                    self._consumer.seek(tp, message.offset)
                    break
                skipped = message.offset in done
                taken.append(_Slot(message, done=skipped, skipped=skipped))
                count += 1
                size += message.size
            if taken:
                batch[tp] = taken
        return batch

    def _handle(self, batch: dict[TopicPartition, list[_Slot]]) -> bool:
        """Decodes, dead-letters poison, processes; marks each slot done or failed. Returns
        whether anything is retried (the caller backs off)."""
        envelopes: list[Envelope[T]] = []
        slots: list[_Slot] = []
        poison: list[tuple[_Slot, BaseException]] = []
        for tp_slots in batch.values():
            for slot in tp_slots:
                if slot.done:
                    continue
                try:
                    payload = self._processor.decode(slot.message)
                except Exception as exc:  # noqa: BLE001 - any decode failure: the record itself is bad
                    poison.append((slot, exc))
                    continue
                slot.index = len(envelopes)
                envelopes.append(Envelope(slot.message, payload))
                slots.append(slot)
        if poison and not self._dead_letter(poison, "decode"):
            # The DLQ is unreachable: nothing is processed, everything comes again.
            self._outage(batch, PublishError("the DLQ could not be written"))
            return True
        if envelopes:
            try:
                failures = self._processor.process(envelopes)
            except Exception as exc:  # noqa: BLE001 - classified below: outage, or narrowed down
                if is_transient(exc):
                    self._outage(batch, exc)
                    return True
                failures = self._one_by_one(envelopes, exc)
            for slot in slots:
                slot.error = failures.get(slot.index)
                slot.done = slot.error is None
        return self._settle(batch)

    def _one_by_one(self, envelopes: list[Envelope[T]], first: BaseException) -> dict[int, BaseException]:
        """After a batch failed as a whole: each record alone, in order, so a bad record is
        told from its neighbours. A partition stops at its first failure (the records after
        it are not done; they come again after the rewind)."""
        log.warning("batch failed; processing its records one at a time", extra={"error": str(first)})
        failures: dict[int, BaseException] = {}
        stopped: set[TopicPartition] = set()
        for index, envelope in enumerate(envelopes):
            tp = envelope.message.tp
            if tp in stopped:
                failures[index] = NotReached()
                continue
            try:
                error = self._processor.process([envelope]).get(0)
            except Exception as exc:  # noqa: BLE001 - this record's failure, counted by _settle
                error = exc
            if error is not None:
                failures[index] = error
                stopped.add(tp)
        return failures

    def _settle(self, batch: dict[TopicPartition, list[_Slot]]) -> bool:
        """Counts each failure; a record that failed ``record_attempts`` times is dead-lettered
        (then done). A partition with a failure left is rewound to it. Returns whether any
        record is retried."""
        exhausted: list[tuple[_Slot, BaseException]] = []
        retried = False
        for tp, tp_slots in batch.items():
            for slot in tp_slots:
                error = slot.error
                if slot.done or error is None or isinstance(error, NotReached):
                    continue
                key = (tp, slot.message.offset)
                attempts = self._attempts.get(key, 0) + 1
                self._attempts[key] = attempts
                if is_transient(error) or attempts < self._policy.record_attempts:
                    continue
                exhausted.append((slot, error))
        if exhausted and self._dead_letter(exhausted, "processing"):
            for slot, _error in exhausted:
                slot.done = True
                self._attempts.pop((slot.message.tp, slot.message.offset), None)
        for tp, tp_slots in batch.items():
            first = next((slot for slot in tp_slots if not slot.done), None)
            if first is None:
                continue
            retried = True
            self._metrics.processing_retries.labels(tp.topic).inc()
            error = first.error
            level = logging.WARNING if error is None or isinstance(error, NewswatchError) else logging.ERROR
            log.log(
                level,
                "processing failed, will retry the record",
                exc_info=(type(error), error, error.__traceback__)
                if level == logging.ERROR and error
                else None,
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": first.message.offset,
                    "attempt": self._attempts.get((tp, first.message.offset), 0),
                    "error": str(error) if error is not None else "not reached",
                },
            )
            self._consumer.seek(tp, first.message.offset)
            later = [s.message.offset for s in tp_slots if s.done and s.message.offset > first.message.offset]
            if later:
                self._done.setdefault(tp, set()).update(later)
        for tp_slots in batch.values():
            for slot in tp_slots:
                if slot.done and not slot.skipped:
                    self._metrics.consumed.labels(slot.message.topic).inc()
        return retried

    def _outage(self, batch: dict[TopicPartition, list[_Slot]], exc: BaseException) -> None:
        """A transient failure of the whole batch: every partition back to its first record
        not done, no attempt counted (the outage is waited out, however long)."""
        log.warning("processing waits for an outage to end", extra={"error": str(exc)})
        for tp, tp_slots in batch.items():
            first = next((s for s in tp_slots if not s.done), None)
            if first is not None:
                self._metrics.processing_retries.labels(tp.topic).inc()
                self._consumer.seek(tp, first.message.offset)
                later = [
                    s.message.offset for s in tp_slots if s.done and s.message.offset > first.message.offset
                ]
                if later:
                    self._done.setdefault(tp, set()).update(later)
            for slot in tp_slots:
                if not slot.done:
                    slot.error = exc

    def _dead_letter(self, slots: list[tuple[_Slot, BaseException]], reason: str) -> bool:
        """Copies records to the DLQ with their error; False (nothing marked) if that fails."""
        records = [dlq_record(slot.message, error, self._service) for slot, error in slots]
        try:
            self._sink.publish(records)
        except PublishError as exc:
            log.error(
                "could not dead-letter records; they are retried",
                extra={"records": len(records), "error": str(exc)},
            )
            return False
        for slot, error in slots:
            slot.done = True
            self._metrics.dlq.labels(slot.message.topic, reason).inc()
            log.warning(
                "record sent to the DLQ",
                extra={
                    "topic": slot.message.topic,
                    "partition": slot.message.partition,
                    "offset": slot.message.offset,
                    "reason": reason,
                    "error": str(error)[:500],
                },
            )
        return True

    def _commit_points(self, batch: dict[TopicPartition, list[_Slot]]) -> dict[TopicPartition, int]:
        """Per partition, the offset after its last record done in an unbroken run."""
        offsets: dict[TopicPartition, int] = {}
        for tp, tp_slots in batch.items():
            done = self._done.get(tp, set())
            point = None
            for slot in tp_slots:
                if not slot.done:
                    break
                point = slot.message.offset + 1
            if point is None:
                continue
            while point in done:  # done earlier, after a record that has now succeeded
                point += 1
            offsets[tp] = point
            if done:
                remaining = {o for o in done if o >= point}
                if remaining:
                    self._done[tp] = remaining
                else:
                    self._done.pop(tp, None)
        return offsets

    def _forget_revoked(self, assignment: set[TopicPartition]) -> None:
        """A rebalance took partitions away: what we knew of their records is another's now."""
        if assignment == self._assigned:
            return
        gone = self._assigned - assignment
        self._assigned = set(assignment)
        for tp in gone:
            self._done.pop(tp, None)
        if gone:
            self._attempts = {k: v for k, v in self._attempts.items() if k[0] not in gone}

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self._consumer.commit(offsets)
        except KafkaCommitError as exc:
            # At-least-once: the records will be redelivered; downstream dedups them.
            self._metrics.commit_errors.inc()
            log.warning("offset commit failed; records will be processed again", extra={"error": str(exc)})

    def _update_lag(self) -> None:
        """Lag from the consumer's own highwater (not the broker's end offsets)."""
        lag: dict[str, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            position = self._consumer.position(tp) if high is not None else None
            if high is not None and position is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
        for topic, value in lag.items():
            self._metrics.consumer_lag.labels(topic).set(value)


class NotReached(Exception):
    """A record after a failed one in the same partition, left undone in this pass (the
    effects of a partition's records happen in its order)."""


def in_order(batch: Sequence[Envelope[T]], failures: Mapping[int, BaseException]) -> dict[int, BaseException]:
    """``failures`` plus every later record of a failed record's partition, as not reached:
    what a processor that works a whole batch before its effects must leave undone, so a
    partition's effects stay in its order."""
    failed: dict[TopicPartition, int] = {}
    for index in sorted(failures):
        failed.setdefault(batch[index].message.tp, index)
    out = dict(failures)
    for index, envelope in enumerate(batch):
        first = failed.get(envelope.message.tp)
        if first is not None and index > first and index not in out:
            out[index] = NotReached()
    return out
