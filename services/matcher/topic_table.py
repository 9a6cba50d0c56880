"""Builds the live TopicSet from ``newswatch.topics``.

Every matcher replica needs every topic, so this reads all partitions without a consumer
group, from the beginning, and keeps the latest definition per key (a tombstone deletes).
On start-up it reads up to the consumer's highwater before items are matched, so no item
is evaluated against a half-loaded set.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from newswatch.matcher.errors import QueryError
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.topics import TopicSet
from newswatch.shared.contract import TOPICS, TopicDefinition, decode
from newswatch.shared.errors import ContractError, KafkaUnavailableError

log = logging.getLogger(__name__)


class TopicTable:
    def __init__(self, consumer: Any, metrics: MatcherMetrics) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self.topics = TopicSet()
        self._partitions: list[TopicPartition] = []

    def assign(self, stop: threading.Event, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            parts = self._consumer.partitions_for_topic(TOPICS)
            if parts:
                self._partitions = [TopicPartition(TOPICS, p) for p in sorted(parts)]
                self._consumer.assign(self._partitions)
                self._consumer.seek_to_beginning(*self._partitions)
                return
            time.sleep(0.2)
        raise KafkaUnavailableError(f"no partitions found for {TOPICS} within {timeout:.0f}s")

    def catch_up(self, stop: threading.Event, timeout: float = 60.0) -> None:
        """Apply every definition up to the highwater seen at start-up."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            self.poll(200)
            highs = [self._consumer.highwater(tp) for tp in self._partitions]
            if all(h is not None for h in highs) and all(
                self._consumer.position(tp) >= h for tp, h in zip(self._partitions, highs, strict=True)
            ):
                log.info("topic set loaded", extra={"topics": len(self.topics)})
                return
        if not stop.is_set():
            raise KafkaUnavailableError(f"could not read {TOPICS} to its end within {timeout:.0f}s")

    def close(self) -> None:
        self._consumer.close()

    def poll(self, timeout_ms: int = 0) -> None:
        try:
            batch = self._consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"reading {TOPICS} failed: {exc}") from exc
        topics = self.topics
        for messages in batch.values():
            for message in messages:
                topics = self._apply(topics, message)
        if topics is not self.topics:
            self.topics = topics  # one reference swap: items see old or new, never half
            self._metrics.topics_loaded.set(len(topics))

    def _apply(self, topics: TopicSet, message: Any) -> TopicSet:
        topic_id = message.key.decode("utf-8", "replace") if message.key else ""
        if message.value is None:
            if topics.get(topic_id):
                log.info("topic deleted", extra={"topic_id": topic_id})
            return topics.without(topic_id)
        try:
            definition = decode(TopicDefinition, message.value)
            updated = topics.with_topic(definition.id, definition.query)
        except ContractError as exc:
            self._metrics.topic_errors.labels("decode").inc()
            log.error("undecodable topic definition ignored", extra={"key": topic_id, "error": str(exc)})
            return topics
        except QueryError as exc:
            self._metrics.topic_errors.labels("compile").inc()
            log.error(
                "topic rejected; the previous version stays", extra={"topic_id": topic_id, "error": str(exc)}
            )
            return topics
        if updated is not topics:
            log.info("topic loaded", extra={"topic_id": definition.id, "query": definition.query})
        return updated
