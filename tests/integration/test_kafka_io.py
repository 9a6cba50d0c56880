"""The kafka-python adapter against the real broker: topic creation, client settings, a
publish that nothing acknowledges. The loop's and the publisher's behaviour is held by the
contract suite (tests/contract), on this broker and on the in-memory backend."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS
from newswatch.shared.errors import PublishError
from newswatch.shared.kafka_client import READER_FETCH_WAIT_MS, ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.metrics import PipelineMetrics

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
        producer.close(timeout=5)


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
