"""Reading a whole Kafka topic from the test side (independent of the code under test)."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaConsumer


def read_records(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[Any]:
    """Every record currently on ``topic``, from the start; stops after ``idle_ms`` without one."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=idle_ms
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def read_json(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_records(bootstrap, topic)]
