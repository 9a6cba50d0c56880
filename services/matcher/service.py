"""The matcher process: items in, matches (with the reason) out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from newswatch.matcher.compiled import source_modules
from newswatch.matcher.document import Document
from newswatch.matcher.errors import AliasError
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.topic_table import TopicTable
from newswatch.matcher.topics import Compiler
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS, ITEMS, MATCHES, Item, Match, decode, encode
from newswatch.shared.errors import ConfigError, ContractError
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_io import (
    ConsumerLoop,
    Publisher,
    Record,
    dlq_record,
    ensure_topics,
    make_consumer,
    producer_factory,
)
from newswatch.shared.tracing import HEADER as TRACE_HEADER
from newswatch.shared.tracing import child, from_headers, trace_id

log = logging.getLogger(__name__)
GROUP_ID = "newswatch-matcher"


class ItemHandler:
    """Processes one ``newswatch.items`` record: decode, evaluate, publish matches."""

    def __init__(
        self,
        table: TopicTable,
        publisher: Publisher,
        metrics: MatcherMetrics,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = table
        self._publisher = publisher
        self._metrics = metrics
        self._now = now

    def __call__(self, message: Any) -> None:
        try:
            item = decode(Item, message.value)
        except ContractError as exc:
            self._publisher.publish([dlq_record(message, exc, "matcher")])
            self._metrics.pipeline.dlq.labels(ITEMS, "decode").inc()
            log.warning(
                "undecodable item sent to the DLQ", extra={"offset": message.offset, "error": str(exc)}
            )
            return
        started = time.perf_counter()
        doc = Document.from_item(item)
        topics = self._table.topics  # one set for the whole item, even if a change lands meanwhile
        found, candidates = topics.matches(doc)
        self._metrics.candidates.observe(candidates)
        matches = [
            Match(topic_id=topic.id, query=topic.query, item=item, reason=reason, matched_at=self._now())
            for topic, reason in found
        ]
        self._metrics.evaluation_seconds.observe(time.perf_counter() - started)
        self._metrics.items_evaluated.inc()
        self._metrics.count_lexicon_resets()
        parent = from_headers(message.headers)
        if matches:
            self._publisher.publish(
                [
                    Record(MATCHES, m.topic_id, encode(m), [(TRACE_HEADER, child(parent).encode())])
                    for m in matches
                ]
            )
            self._metrics.items_matched.inc()
            self._metrics.matches.inc(len(matches))
            for m in matches:
                self._metrics.count_topic_match(m.topic_id)
            log.info(
                "item matched",
                extra={
                    "item_id": item.item_id,
                    "topics": [m.topic_id for m in matches],
                    "trace_id": trace_id(parent),
                },
            )


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    bootstrap = config.require_bootstrap()  # fail before opening anything
    try:
        compiler = Compiler.from_settings(config.matcher)
    except AliasError as exc:
        raise ConfigError(f"matcher aliases: {exc}") from exc
    registry = CollectorRegistry()
    metrics = MatcherMetrics(registry)
    health = Health()
    server = ObservabilityServer(config.http.host, http_port, registry, health)
    server.start()
    log.info("matcher starting", extra={"http_port": server.port})
    if source := source_modules():
        log.warning(
            "the matcher's hot code runs as Python source, not compiled: correct, slower "
            "(install with a C compiler, see setup.py)",
            extra={"modules": source},
        )
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-matcher"),
        metrics.pipeline,
        config.kafka.send_timeout,
    )
    table: TopicTable | None = None
    items_consumer = None
    try:
        health.set_not_ready("creating Kafka topics")
        ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
        table = TopicTable(
            make_consumer(bootstrap, config.kafka, None, "newswatch-matcher-topics"), metrics, compiler
        )
        health.set_not_ready("loading topics")
        table.assign(stop)
        table.catch_up(stop)
        if not len(table.topics):
            log.warning("no topics loaded yet; load some with `newswatch apply -f CONFIG.yaml`")
        items_consumer = make_consumer(bootstrap, config.kafka, GROUP_ID, "newswatch-matcher")
        items_consumer.subscribe([ITEMS])
        loop = ConsumerLoop(
            items_consumer, ItemHandler(table, publisher, metrics), metrics.pipeline, sleep=stop.wait
        )
        health.set_not_ready("joining consumer group")
        while not stop.is_set():
            table.poll(0)
            loop.run_once()
            table.maybe_replan()
            health.beat()
            if items_consumer.assignment():
                health.set_ready()
    finally:
        health.set_not_ready("stopping")
        if items_consumer is not None:
            items_consumer.close()
        if table is not None:
            table.close()
        publisher.close()
        server.stop()
        log.info("matcher stopped")
