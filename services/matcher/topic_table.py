"""Builds the live TopicSet from ``newswatch.topics``.

Every matcher replica needs every topic, so this reads all partitions without a consumer
group, from the beginning, and keeps the latest definition per key (a tombstone deletes).
On start-up it reads up to the consumer's highwater before items are matched, so no item
is evaluated against a half-loaded set.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from newswatch.matcher.errors import QueryError
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.topics import TopicSet
from newswatch.shared.contract import TOPICS, TopicDefinition, decode
from newswatch.shared.errors import ContractError
from newswatch.shared.table import TableReader

log = logging.getLogger(__name__)


class TopicTable:
    def __init__(self, consumer: Any, metrics: MatcherMetrics) -> None:
        self._reader = TableReader(consumer, TOPICS)
        self._metrics = metrics
        self.topics = TopicSet()

    def assign(self, stop: threading.Event, timeout: float = 60.0) -> None:
        self._reader.assign(stop, timeout)

    def catch_up(self, stop: threading.Event, timeout: float = 60.0) -> None:
        """Apply every definition up to the highwater seen at start-up."""
        self._reader.catch_up(stop, self._apply_all, timeout)
        log.info("topic set loaded", extra={"topics": len(self.topics)})

    def close(self) -> None:
        self._reader.close()

    def poll(self, timeout_ms: int = 0) -> None:
        self._reader.poll(self._apply_all, timeout_ms)

    def _apply_all(self, records: list[Any]) -> None:
        topics = self.topics
        for message in records:
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
