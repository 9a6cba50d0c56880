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

from newswatch.matcher.errors import QueryError
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.presearch import KeyStats
from newswatch.matcher.topics import Compiler, Topic, TopicSet
from newswatch.shared.contract import TOPICS, TopicDefinition, decode
from newswatch.shared.errors import ContractError
from newswatch.shared.table import TableReader

log = logging.getLogger(__name__)


class TopicTable:
    def __init__(self, consumer: Any, metrics: MatcherMetrics, compiler: Compiler) -> None:
        self._reader = TableReader(consumer, TOPICS)
        self._metrics = metrics
        self._compiler = compiler
        self.topics = TopicSet(compiler, stats=KeyStats())
        self._planned_at = 0  # stats.items when the index was last planned
        self._disabled: dict[str, str] = {}  # topic id → the query set aside (until it changes)

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

    def maybe_replan(self) -> bool:
        """Re-index the topics under their rarest groups once the stream taught us more.

        First after 200 sampled items, then whenever the sample has doubled (the sample
        decays, so this settles to a rebuild every ``KeyStats.window`` samples or so).
        """
        stats = self.topics.stats
        if stats is None or stats.items < max(200, 2 * self._planned_at):
            return False
        started = time.perf_counter()
        self.topics = self.topics.replanned()
        self.topics.index  # noqa: B018 - build it now, not on the next item
        self._planned_at = stats.items
        self._metrics.replans.inc()
        self._metrics.presearch_pairs.set(self.topics.index.pairs)
        log.info(
            "presearch index re-planned from item statistics",
            extra={"topics": len(self.topics), "seconds": round(time.perf_counter() - started, 3)},
        )
        return True

    def disable(self, topic: Topic, seconds: float, budget: float) -> None:
        """Sets a topic aside: one item took ``seconds`` (over the ``budget``). It stays out
        of the live set until a new definition of it arrives."""
        if self.topics.get(topic.id) is None:
            return
        self._disabled[topic.id] = topic.query
        self.topics = self.topics.updated({topic.id: None})
        self._metrics.topics_disabled.inc()
        self._metrics.topics_loaded.set(len(self.topics))
        log.error(
            "topic disabled: one item took longer than matcher.topic_budget to evaluate; "
            "it stays out until its definition changes",
            extra={
                "topic_id": topic.id,
                "query": topic.query,
                "seconds": round(seconds, 3),
                "budget": budget,
            },
        )

    def _apply_all(self, records: list[Any]) -> None:
        changes: dict[str, Topic | None] = {}
        for message in records:
            self._apply(changes, message)
        topics = self.topics.updated(changes)
        if topics is not self.topics:
            self.topics = topics  # one reference swap: items see old or new, never half
            self._metrics.topics_loaded.set(len(topics))
            self._metrics.topics_unindexed.set(topics.unindexed)
            self._metrics.presearch_pairs.set(topics.index.pairs)

    def _apply(self, changes: dict[str, Topic | None], message: Any) -> None:
        topic_id = message.key.decode("utf-8", "replace") if message.key else ""
        current = changes[topic_id] if topic_id in changes else self.topics.get(topic_id)
        if message.value is None:
            if current is not None:
                log.info("topic deleted", extra={"topic_id": topic_id})
            changes[topic_id] = None
            self._disabled.pop(topic_id, None)
            return
        try:
            definition = decode(TopicDefinition, message.value)
            topic = self._compiler.compile(definition.id, definition.query)
        except ContractError as exc:
            self._metrics.topic_errors.labels("decode").inc()
            log.error("undecodable topic definition ignored", extra={"key": topic_id, "error": str(exc)})
            return
        except QueryError as exc:
            self._metrics.topic_errors.labels("compile").inc()
            log.error(
                "topic rejected; the previous version stays", extra={"topic_id": topic_id, "error": str(exc)}
            )
            return
        if self._disabled.get(topic.id) == topic.query:
            return  # the same definition again (a re-read table): it stays set aside
        self._disabled.pop(topic.id, None)
        if topic != current:
            level = logging.INFO if topic.indexed else logging.WARNING
            log.log(
                level,
                "topic loaded"
                if topic.indexed
                else "topic loaded; it has no presearch key and is evaluated for every item",
                extra={"topic_id": topic.id, "query": topic.query},
            )
        changes[topic.id] = topic
