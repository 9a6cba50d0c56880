"""Kafka I/O against the real broker: acknowledgements, rebuilds, at-least-once commits."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS
from newswatch.shared.errors import KafkaUnavailableError, PublishError
from newswatch.shared.kafka_io import (
    READER_FETCH_WAIT_MS,
    ConsumerLoop,
    Publisher,
    Record,
    ensure_topics,
    make_consumer,
    producer_factory,
)
from newswatch.shared.metrics import PipelineMetrics
from tests.support.kafka import read_records
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def metrics() -> PipelineMetrics:
    return PipelineMetrics(CollectorRegistry(), "test", "0")


def test_ensure_topics_creates_contract_topics_idempotently(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert set(ALL_TOPICS) <= set(admin.list_topics())
        described = admin.describe_topics([ITEMS])
        assert len(described[0]["partitions"]) == kafka_settings.partitions
    finally:
        admin.close()


def test_publisher_waits_for_acks_and_survives_a_broker_restart(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, [ITEMS])
    m = metrics()
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "t"), m, send_timeout=5, backoff=0.2
    )
    publisher.publish([Record(ITEMS, f"k{i}", b"v") for i in range(5)])
    assert len(read_records(broker.bootstrap, ITEMS)) == 5
    # The embedded broker loses everything on restart; an idempotent producer stays broken.
    broker.stop()
    broker.start()
    ensure_topics(broker.bootstrap, kafka_settings, [ITEMS])
    publisher.publish([Record(ITEMS, "after", b"restart")])
    assert [r.value for r in read_records(broker.bootstrap, ITEMS)] == [b"restart"]
    assert m.producer_rebuilds._value.get() >= 1
    publisher.close()


def test_latency_settings_reach_the_clients(broker: EmbeddedBroker) -> None:
    """Group consumers (the alert path) and producers take the configured wait and linger;
    groupless readers keep the longer reader wait (fewer idle fetches)."""
    settings = KafkaSettings(
        session_timeout_ms=6000, heartbeat_interval_ms=1000, fetch_max_wait_ms=35, linger_ms=7
    )
    group = make_consumer(broker.bootstrap, settings, "latency-test", "test")
    reader = make_consumer(broker.bootstrap, settings, None, "test")
    producer: Any = producer_factory(broker.bootstrap, settings, "test")()
    try:
        assert group.config["fetch_max_wait_ms"] == 35
        assert reader.config["fetch_max_wait_ms"] == READER_FETCH_WAIT_MS != 35
        assert producer.config["linger_ms"] == 7
    finally:
        group.close()
        reader.close()
        producer.close()


def test_publisher_raises_when_nothing_is_acknowledged(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, [ITEMS])
    settings = kafka_settings.model_copy(update={"send_timeout": 2.0, "request_timeout_ms": 1500})
    publisher = Publisher(
        producer_factory(broker.bootstrap, settings, "t"), metrics(), send_timeout=2, attempts=2, backoff=0.1
    )
    publisher.publish([Record(ITEMS, "a", b"1")])
    broker.stop()
    with pytest.raises(PublishError, match="not acknowledged after 2 attempts"):
        publisher.publish([Record(ITEMS, "b", b"2")])
    publisher.close()


def test_consumer_loop_retries_a_failed_record_and_commits_only_done_work(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings.model_copy(update={"partitions": 1}), [ITEMS])
    publisher = Publisher(producer_factory(broker.bootstrap, kafka_settings, "t"), metrics(), send_timeout=5)
    publisher.publish([Record(ITEMS, f"k{i}", str(i).encode()) for i in range(6)])
    publisher.close()
    handled: list[bytes] = []
    failures = {b"3": 2}  # record 3 fails twice, then succeeds

    def handler(message: Any) -> None:
        if failures.get(message.value, 0) > 0:
            failures[message.value] -= 1
            raise RuntimeError("transient")
        handled.append(message.value)

    m = metrics()
    consumer = make_consumer(broker.bootstrap, kafka_settings, "g-test", "t")
    consumer.subscribe([ITEMS])
    loop = ConsumerLoop(consumer, handler, m, poll_timeout_ms=200, retry_backoff=0.01)
    wait_for(lambda: loop.run_once() is not None and len(handled) == 6, 40, interval=0.01, what="all records")
    assert handled == [b"0", b"1", b"2", b"3", b"4", b"5"]  # in order, none skipped, none twice
    assert m.processing_retries.labels(ITEMS)._value.get() == 2
    consumer.close()
    # A new member of the group starts after the committed work: nothing is redone.
    again: list[bytes] = []
    consumer = make_consumer(broker.bootstrap, kafka_settings, "g-test", "t2")
    consumer.subscribe([ITEMS])
    loop = ConsumerLoop(consumer, lambda msg: again.append(msg.value), m, poll_timeout_ms=200)
    wait_for(
        lambda: loop.run_once() is not None and consumer.assignment(), 30, interval=0.01, what="assignment"
    )
    for _ in range(5):
        loop.run_once()
    assert again == []
    consumer.close()


@pytest.mark.parametrize("partitions", [3, 4])
def test_consumer_loop_does_not_skip_records_of_a_recreated_topic(
    partitions: int, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    """The broker restarts empty under a group consumer and 30 records land at once, so the
    new logs grow past the consumer's old positions before it notices: every one of the 30
    is still handled (duplicates are allowed: the loop is at-least-once). The topic comes
    back with the same partitions, or with one more (as a broker's auto-creation can make it)."""
    ensure_topics(broker.bootstrap, kafka_settings, [ITEMS])
    publisher = Publisher(producer_factory(broker.bootstrap, kafka_settings, "t"), metrics(), send_timeout=5)
    publisher.publish([Record(ITEMS, f"before{i}", f"before{i}".encode()) for i in range(12)])
    handled: list[bytes] = []
    consumer = make_consumer(broker.bootstrap, kafka_settings, "g-recreated", "t")
    consumer.subscribe([ITEMS])
    loop = ConsumerLoop(consumer, lambda m: handled.append(m.value), metrics(), poll_timeout_ms=200)
    try:
        wait_for(lambda: loop.run_once() is not None and len(handled) >= 12, 40, interval=0.01, what="before")
        broker.stop()
        broker.start()
        ensure_topics(broker.bootstrap, kafka_settings.model_copy(update={"partitions": partitions}), [ITEMS])
        publisher.publish([Record(ITEMS, f"after{i}", f"after{i}".encode()) for i in range(30)])
        after = {f"after{i}".encode() for i in range(30)}

        def all_after() -> bool:
            with contextlib.suppress(KafkaUnavailableError):
                loop.run_once()
            return after <= set(handled)

        with contextlib.suppress(AssertionError):
            wait_for(all_after, 60, interval=0.01, what="every record published after the restart")
        assert sorted(after - set(handled)) == []
    finally:
        consumer.close()
        publisher.close()
