"""The kafka-python adapter: the one module that knows the Kafka client library.

It implements ``kafka_io``'s ``Consumer`` and ``Producer`` Protocols over kafka-python's
``KafkaConsumer`` and ``KafkaProducer``, converts its errors into ours, and holds the
workarounds that need its private attributes (a topic's id from the client's metadata; a
producer that cannot be closed cleanly). It also creates the contract topics (``ensure_topics``)
and builds every client from the same settings, so a broker's TLS and SASL options are
given once, here, to producers, consumers and the admin client alike.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, COMPACTED_TOPICS
from newswatch.shared.errors import KafkaCommitError, KafkaSendError, KafkaUnavailableError
from newswatch.shared.kafka_io import (
    Ack,
    Headers,
    Message,
    Producer,
    Publisher,
    Record,
    TopicPartition,
)
from newswatch.shared.metrics import PipelineMetrics

log = logging.getLogger(__name__)

#: kafka-python's default (30 s) would leave a service idle that long after a broker restart.
RECONNECT_BACKOFF_MAX_MS = 2000
#: fetch_max_wait_ms of groupless readers (Kafka's default): their records are not on the alert path.
READER_FETCH_WAIT_MS = 500


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python options for the broker's TLS and SASL (``kafka.security_protocol`` …)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile is not None:
            options["ssl_cafile"] = str(settings.ssl_cafile)
        if settings.ssl_certfile is not None:
            options["ssl_certfile"] = str(settings.ssl_certfile)
        if settings.ssl_keyfile is not None:
            options["ssl_keyfile"] = str(settings.ssl_keyfile)
        options["ssl_check_hostname"] = settings.ssl_check_hostname
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


def _ktp(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


class KafkaConsumerAdapter:
    """``Consumer`` over a ``KafkaConsumer``."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    @property
    def config(self) -> dict[str, Any]:
        """The client's effective configuration (for tests and diagnostics)."""
        return dict(self._consumer.config)

    def subscribe(self, topics: Sequence[str]) -> None:
        self._consumer.subscribe(list(topics))

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._consumer.assign([_ktp(tp) for tp in partitions])

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        try:
            parts = self._consumer.partitions_for_topic(topic)
        except KafkaError:
            return None
        return set(parts) if parts else None

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        try:
            raw = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"poll failed: {type(exc).__name__}: {exc}") from exc
        return {
            TopicPartition(tp.topic, tp.partition): [
                Message(r.topic, r.partition, r.offset, r.key, r.value, r.headers or (), r.timestamp)
                for r in records
            ]
            for tp, records in raw.items()
        }

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(_ktp(partition), offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._consumer.seek_to_beginning(*[_ktp(tp) for tp in partitions])

    def position(self, partition: TopicPartition) -> int | None:
        try:
            position = self._consumer.position(_ktp(partition), timeout_ms=100)
        except KafkaError:
            return None
        return None if position is None else int(position)

    def highwater(self, partition: TopicPartition) -> int | None:
        high = self._consumer.highwater(_ktp(partition))
        return None if high is None else int(high)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            self._consumer.commit({_ktp(tp): OffsetAndMetadata(off, None, -1) for tp, off in offsets.items()})
        except KafkaError as exc:
            raise KafkaCommitError(f"commit failed: {type(exc).__name__}: {exc}") from exc

    def topic_id(self, topic: str) -> object | None:
        # kafka-python keeps topic ids in its cluster metadata (``ClusterMetadata.topic_id``),
        # reached through the consumer's private client; without one the topic is not watched.
        cluster = getattr(getattr(self._consumer, "_client", None), "cluster", None)
        lookup = getattr(cluster, "topic_id", None)
        return None if lookup is None else lookup(topic)

    def close(self) -> None:
        with contextlib.suppress(KafkaError):
            self._consumer.close()


class _SendFuture:
    def __init__(self, future: Any, topic: str) -> None:
        self._future = future
        self._topic = topic

    def get(self, timeout: float) -> Ack:
        try:
            meta = self._future.get(timeout=timeout)
        except KafkaError as exc:
            raise KafkaSendError(f"{type(exc).__name__}: {exc}") from exc
        return Ack(self._topic, int(meta.partition), int(meta.offset))


class KafkaProducerAdapter:
    """``Producer`` over a ``KafkaProducer``."""

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._producer.config)

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> _SendFuture:
        try:
            future = self._producer.send(topic, key=key, value=value, headers=list(headers))
        except KafkaError as exc:
            raise KafkaSendError(f"{type(exc).__name__}: {exc}") from exc
        return _SendFuture(future, topic)

    def close(self, timeout: float) -> None:
        """Close, even a producer whose records cannot be delivered.

        kafka-python 3.0's ``close()`` flushes first and raises when records are still
        pending, before it stops its sender thread; the object then raises again from
        ``__del__``. So after a failed close the sender is force-closed and the producer
        marked closed.
        """
        try:
            self._producer.close(timeout=timeout)
        except KafkaError:
            log.warning("producer closed with undelivered records (they were reported as failed)")
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            if hasattr(self._producer, "_closed"):
                self._producer._closed = True  # see docstring


def producer_factory(bootstrap: str, settings: KafkaSettings, client_id: str) -> Callable[[], Producer]:
    """A factory so Publisher can rebuild its producer; injected for tests.

    Clients never create topics themselves (``allow_auto_create_topics=False``): a topic
    auto-created by a metadata request gets the broker's defaults (partition count, no
    compaction), and a group consumer then misses the records of partitions it did not
    know. Topics are created by ``ensure_topics`` only: at start-up by every service, and
    again on every rebuild, since a producer is rebuilt after failed sends, which is what a
    broker that lost its data (and its topics) causes.
    """
    builds = 0

    def build() -> Producer:
        nonlocal builds
        builds += 1
        if builds > 1:
            ensure_topics(bootstrap, settings, ALL_TOPICS, deadline_s=settings.send_timeout)
        try:
            producer = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=settings.linger_ms,
                batch_size=settings.producer_batch_bytes,
                request_timeout_ms=settings.request_timeout_ms,
                max_block_ms=int(settings.send_timeout * 1000),
                delivery_timeout_ms=max(
                    int(settings.send_timeout * 1000), settings.request_timeout_ms + settings.linger_ms + 5
                ),
                bootstrap_timeout_ms=int(settings.send_timeout * 1000),
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                allow_auto_create_topics=False,
                **security_options(settings),
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot create Kafka producer for {bootstrap}: {exc}") from exc
        return KafkaProducerAdapter(producer)

    return build


def make_consumer(
    bootstrap: str, settings: KafkaSettings, group_id: str | None, client_id: str
) -> KafkaConsumerAdapter:
    """A consumer that never auto-commits: offsets are committed by ConsumerLoop after the work."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
            max_poll_records=settings.batch_max_records,
            # A broker that does not answer a waiting fetch as soon as records arrive (the
            # embedded one) holds each record up to this long. Group consumers carry the
            # alert path (items, matches) and use the configured wait; groupless readers of
            # tables, replays and the alert stream wait longer and send fewer idle fetches.
            fetch_max_wait_ms=settings.fetch_max_wait_ms if group_id else READER_FETCH_WAIT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            allow_auto_create_topics=False,  # see producer_factory
            **security_options(settings),
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot create Kafka consumer for {bootstrap}: {exc}") from exc
    return KafkaConsumerAdapter(consumer)


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
                **security_options(settings),
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


def publish_once(bootstrap: str, settings: KafkaSettings, records: Sequence[Record], client_id: str) -> None:
    """For command-line tools: create the topics if needed, publish, wait for every ack, close."""
    ensure_topics(bootstrap, settings, ALL_TOPICS)
    metrics = PipelineMetrics(CollectorRegistry(), client_id, "cli")
    publisher = Publisher(producer_factory(bootstrap, settings, client_id), metrics, settings.send_timeout)
    try:
        publisher.publish(records)
    finally:
        publisher.close()
