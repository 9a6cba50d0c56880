"""Kafka I/O with the guarantees the pipeline relies on.

- ``Publisher``: every send future is checked; a failed send closes and rebuilds the
  producer (an idempotent producer can stay broken after a broker restart while
  ``flush()`` says nothing), then retries a bounded number of times.
- ``ConsumerLoop``: at-least-once. An offset is committed only after the handler's effect
  is done; a transient failure seeks the partition back to the failed record.
- ``ensure_topics``: idempotent creation of the contract topics at start-up.

kafka-python errors are converted to newswatch errors here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, COMPACTED_TOPICS, DLQ, DLQ_HEADERS
from newswatch.shared.errors import KafkaUnavailableError, NewswatchError, PublishError
from newswatch.shared.metrics import PipelineMetrics

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
#: kafka-python's default (30 s) would leave a service idle that long after a broker restart.
RECONNECT_BACKOFF_MAX_MS = 2000


@dataclass(frozen=True)
class Record:
    """One record to publish."""

    topic: str
    key: str | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class Ack:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int


class PartialPublishError(PublishError):
    """Some records were acknowledged before the publish failed: ``acked`` maps their indexes.

    A caller that records what it sent (the fetcher's seen-set) keeps the acknowledged ones
    and retries only the rest, instead of publishing them twice.
    """

    def __init__(self, message: str, acked: dict[int, Ack]) -> None:
        super().__init__(message)
        self.acked = acked


class ProducerLike(Protocol):
    def send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers) -> Any: ...
    def close(self, timeout: float | None = None) -> None: ...


def producer_factory(bootstrap: str, settings: KafkaSettings, client_id: str) -> Callable[[], ProducerLike]:
    """A factory so Publisher can rebuild its producer; injected for tests.

    Clients never create topics themselves (``allow_auto_create_topics=False``): a topic
    auto-created by a metadata request gets the broker's defaults (partition count, no
    compaction), and a group consumer then misses the records of partitions it did not
    know. Topics are created by ``ensure_topics`` only: at start-up by every service, and
    again on every rebuild, since a producer is rebuilt after failed sends, which is what a
    broker that lost its data (and its topics) causes.
    """
    builds = 0

    def build() -> ProducerLike:
        nonlocal builds
        builds += 1
        if builds > 1:
            ensure_topics(bootstrap, settings, ALL_TOPICS, deadline_s=settings.send_timeout)
        try:
            producer: ProducerLike = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=settings.linger_ms,  # every publish waits for its ack: lingering only delays it
                request_timeout_ms=settings.request_timeout_ms,
                max_block_ms=int(settings.send_timeout * 1000),
                delivery_timeout_ms=max(
                    int(settings.send_timeout * 1000), settings.request_timeout_ms + settings.linger_ms + 5
                ),
                bootstrap_timeout_ms=int(settings.send_timeout * 1000),
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                allow_auto_create_topics=False,
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot create Kafka producer for {bootstrap}: {exc}") from exc
        return producer

    return build


class Publisher:
    """Sends records and waits for every acknowledgement.

    Thread-safe: the fetcher publishes from several scheduler threads.
    """

    def __init__(
        self,
        factory: Callable[[], ProducerLike],
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
        self._producer: ProducerLike | None = None

    def _current(self) -> ProducerLike:
        with self._lock:
            if self._producer is None:
                self._producer = self._factory()
            return self._producer

    def _rebuild(self, broken: ProducerLike) -> None:
        with self._lock:
            if self._producer is not broken:
                return  # another thread already replaced it
            self._producer = None
        self._metrics.producer_rebuilds.inc()
        _close_producer(broken, timeout=1)

    def publish(self, records: Sequence[Record]) -> list[Ack]:
        """Publish all records and return where each one was stored, in order.

        Raises PartialPublishError (a PublishError) naming the records that were acknowledged
        when some were not, after the bounded retries.
        """
        pending = list(enumerate(records))
        acked: dict[int, Ack] = {}
        last_error = ""
        for attempt in range(1, self._attempts + 1):
            try:
                producer = self._current()
            except KafkaUnavailableError as exc:
                last_error = str(exc)
            else:
                pending, last_error = self._send_batch(producer, pending, acked)
                if not pending:
                    return [acked[i] for i in range(len(records))]
                self._rebuild(producer)
            if attempt < self._attempts:
                self._sleep(self._backoff * 2 ** (attempt - 1))
        raise PartialPublishError(
            f"{len(pending)} record(s) not acknowledged after {self._attempts} attempts: {last_error}", acked
        )

    def _send_batch(
        self, producer: ProducerLike, records: list[tuple[int, Record]], acked: dict[int, Ack]
    ) -> tuple[list[tuple[int, Record]], str]:
        futures = []
        failed: list[tuple[int, Record]] = []
        error = ""
        for index, record in records:
            try:
                fut = producer.send(
                    record.topic,
                    key=record.key.encode("utf-8") if record.key is not None else None,
                    value=record.value,
                    headers=record.headers,
                )
            except KafkaError as exc:
                failed.append((index, record))
                error = f"{type(exc).__name__}: {exc}"
                self._metrics.publish_errors.labels(record.topic).inc()
                continue
            futures.append((index, record, fut))
        for index, record, fut in futures:
            try:
                meta = fut.get(timeout=self._send_timeout)
            except KafkaError as exc:
                failed.append((index, record))
                error = f"{type(exc).__name__}: {exc}"
                self._metrics.publish_errors.labels(record.topic).inc()
            else:
                acked[index] = Ack(record.topic, int(meta.partition), int(meta.offset))
                self._metrics.published.labels(record.topic).inc()
        return failed, error

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            _close_producer(producer, timeout=5)


def publish_once(bootstrap: str, settings: KafkaSettings, records: Sequence[Record], client_id: str) -> None:
    """For command-line tools: create the topics if needed, publish, wait for every ack, close."""
    ensure_topics(bootstrap, settings, ALL_TOPICS)
    metrics = PipelineMetrics(CollectorRegistry(), client_id, "cli")
    publisher = Publisher(producer_factory(bootstrap, settings, client_id), metrics, settings.send_timeout)
    try:
        publisher.publish(records)
    finally:
        publisher.close()


def _close_producer(producer: ProducerLike, timeout: float) -> None:
    """Close a producer, even one whose records cannot be delivered.

    kafka-python 3.0's ``close()`` flushes first and raises when records are still pending,
    before it stops its sender thread; the object then raises again from ``__del__``. So
    after a failed close the sender is force-closed and the producer marked closed.
    """
    try:
        producer.close(timeout=timeout)
    except KafkaError:
        log.warning("producer closed with undelivered records (they were reported as failed)")
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        if hasattr(producer, "_closed"):
            producer._closed = True  # see docstring


def ensure_topics(
    bootstrap: str, settings: KafkaSettings, topics: Iterable[str], deadline_s: float = 60.0
) -> None:
    """Create the contract topics if missing; retried until ``deadline_s`` (broker may be starting)."""
    wanted = list(topics)
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap.split(","),
                client_id="newswatch-admin",
                request_timeout_ms=settings.request_timeout_ms,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        except KafkaError as exc:
            last = exc
            time.sleep(0.5)
            continue
        try:
            existing = set(admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                new = [
                    NewTopic(
                        name,
                        settings.partitions,
                        settings.replication_factor,
                        topic_configs={"cleanup.policy": "compact"} if name in COMPACTED_TOPICS else {},
                    )
                    for name in missing
                ]
                with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently by another service
                    admin.create_topics(new)
                log.info("created Kafka topics", extra={"topics": missing})
            return
        except KafkaError as exc:
            last = exc
            time.sleep(0.5)
        finally:
            admin.close()
    raise KafkaUnavailableError(
        f"could not create topics {wanted} on {bootstrap} within {deadline_s:.0f}s: {last}"
    )


#: fetch_max_wait_ms of groupless readers (Kafka's default): their records are not on the alert path.
READER_FETCH_WAIT_MS = 500


def make_consumer(bootstrap: str, settings: KafkaSettings, group_id: str | None, client_id: str) -> Any:
    """A consumer that never auto-commits: offsets are committed by ConsumerLoop after the work."""
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
            max_poll_records=200,
            # A broker that does not answer a waiting fetch as soon as records arrive (the
            # embedded one) holds each record up to this long. Group consumers carry the
            # alert path (items, matches) and use the configured wait; groupless readers of
            # tables, replays and the alert stream wait longer and send fewer idle fetches.
            fetch_max_wait_ms=settings.fetch_max_wait_ms if group_id else READER_FETCH_WAIT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            allow_auto_create_topics=False,  # see producer_factory
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot create Kafka consumer for {bootstrap}: {exc}") from exc


def dlq_record(message: Any, error: Exception, service: str) -> Record:
    """The DLQ copy of a consumed message: original key and value, error in headers."""
    values = (
        str(error)[:2000],
        type(error).__name__,
        message.topic,
        message.partition,
        message.offset,
        service,
    )
    headers: Headers = [
        (name, str(value).encode("utf-8")) for name, value in zip(DLQ_HEADERS, values, strict=True)
    ]
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    return Record(DLQ, key, message.value, headers)


def rewind_past_end(consumer: Any, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
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
        try:
            position = consumer.position(tp, timeout_ms=100)
        except KafkaError:
            continue
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
    handed on: the topic id in the client's metadata changed (the topic was recreated), or
    the position lies past the highwater (see ``rewind_past_end``). Either way the partition
    is sought to its beginning and the batch's records from it are dropped: they are read
    again, in order, from offset 0.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._ids: dict[str, object] = {}

    def recreated(self, topics: Iterable[str]) -> set[str]:
        """The topics among ``topics`` whose topic id changed since the last call."""
        # kafka-python keeps topic ids in its cluster metadata (``ClusterMetadata.topic_id``),
        # reached through the consumer's client; a consumer without one is not watched.
        cluster = getattr(getattr(self._consumer, "_client", None), "cluster", None)
        topic_id = getattr(cluster, "topic_id", None)
        if topic_id is None:
            return set()
        changed = set()
        for topic in topics:
            current = topic_id(topic)
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


class ConsumerLoop:
    """Polls a group consumer and hands each record to ``handler`` in partition order.

    ``handler`` must finish the record's effect (publish, deliver, or dead-letter it)
    before returning; only then is its offset committed. If it raises, the partition is
    rewound to that record and retried after a backoff: nothing is skipped.
    """

    def __init__(
        self,
        consumer: Any,
        handler: Callable[[Any], None],
        metrics: PipelineMetrics,
        poll_timeout_ms: int = 500,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 30.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._metrics = metrics
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_backoff = retry_backoff
        self._retry_backoff_max = retry_backoff_max
        self._sleep = sleep
        self._failures = 0
        self._guard = LossGuard(consumer)
        self.last_poll = 0.0

    def run_once(self) -> int:
        """One poll → process → commit cycle. Returns the number of records processed."""
        try:
            batch = self._consumer.poll(timeout_ms=self._poll_timeout_ms)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"poll failed: {exc}") from exc
        self.last_poll = time.monotonic()
        lost = self._guard.check(self._consumer.assignment())
        done: dict[TopicPartition, int] = {}
        failed = False
        for tp, messages in batch.items():
            if tp in lost:  # fetched from a log the broker no longer has: read again from 0
                continue
            for message in messages:
                try:
                    self._handler(message)
                except Exception as exc:
                    failed = True
                    self._metrics.processing_retries.labels(tp.topic).inc()
                    level = logging.WARNING if isinstance(exc, NewswatchError) else logging.ERROR
                    log.log(
                        level,
                        "processing failed, will retry the record",
                        exc_info=not isinstance(exc, NewswatchError),
                        extra={
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "offset": message.offset,
                            "error": str(exc),
                        },
                    )
                    self._consumer.seek(tp, message.offset)
                    break
                done[tp] = message.offset + 1
                self._metrics.consumed.labels(tp.topic).inc()
        # A batch fetched just before the broker lost its data may be handled after it came
        # back empty: committing its offsets would place the group past records of the new
        # log. The guard is asked again, and a recreated topic's offsets are not committed.
        lost |= self._guard.check(self._consumer.assignment())
        done = {tp: offset for tp, offset in done.items() if tp not in lost}
        if done:
            self._commit(done)
        self._update_lag()
        if failed:
            self._failures += 1
            self._sleep(min(self._retry_backoff * 2 ** (self._failures - 1), self._retry_backoff_max))
        else:
            self._failures = 0
        return sum(len(m) for m in batch.values())

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self._consumer.commit({tp: OffsetAndMetadata(off, None, -1) for tp, off in offsets.items()})
        except KafkaError as exc:
            # At-least-once: the records will be redelivered; downstream dedups them.
            self._metrics.commit_errors.inc()
            log.warning("offset commit failed; records will be processed again", extra={"error": str(exc)})

    def _update_lag(self) -> None:
        """Lag from the consumer's own highwater (not ListOffsets)."""
        lag: dict[str, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=100)
            except KafkaError:
                continue
            if position is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
        for topic, value in lag.items():
            self._metrics.consumer_lag.labels(topic).set(value)
