"""Fixtures that start real components: the Kafka-protocol broker on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.processes import free_port

#: Tansu's group join takes about session_timeout/2: keep it short in tests.
TEST_KAFKA = KafkaSettings(session_timeout_ms=6000, heartbeat_interval_ms=1000, send_timeout=10.0)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh, empty broker per test (Tansu starts in milliseconds and keeps nothing)."""
    instance = EmbeddedBroker(free_port())
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def kafka_settings() -> KafkaSettings:
    return TEST_KAFKA
