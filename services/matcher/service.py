"""The matcher process: items in, matches (with the reason) out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from newswatch.matcher.compiled import source_modules
from newswatch.matcher.document import Document
from newswatch.matcher.errors import AliasError
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.topic_table import TopicTable
from newswatch.matcher.topics import Compiler
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS, ITEMS, MATCHES, Item, Match, decode, encode
from newswatch.shared.errors import ConfigError
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import (
    ConsumerLoop,
    Envelope,
    Message,
    Publisher,
    Record,
    Sink,
    in_order,
    loop_policy,
)
from newswatch.shared.metrics import service_registry
from newswatch.shared.runtime import stall_point
from newswatch.shared.tracing import HEADER as TRACE_HEADER
from newswatch.shared.tracing import child, from_headers, trace_id

log = logging.getLogger(__name__)
GROUP_ID = "newswatch-matcher"


class ItemProcessor:
    """``newswatch.items`` → ``newswatch.matches``, a poll's batch at a time.

    Each item is evaluated against one topic set (the set at the start of its evaluation,
    even if a change lands meanwhile); the matches of the whole batch are published
    together and awaited once, then the loop commits. An item whose evaluation raises is
    reported alone, so its neighbours' matches still go out.
    """

    def __init__(
        self,
        table: TopicTable,
        sink: Sink,
        metrics: MatcherMetrics,
        clock: Clock = SYSTEM,
        budget: float = 0.05,
    ) -> None:
        self._table = table
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._budget = budget

    def decode(self, message: Message) -> Item:
        return decode(Item, message.value)

    def process(self, batch: Sequence[Envelope[Item]]) -> dict[int, BaseException]:
        stall_point("matcher.process")
        failures: dict[int, BaseException] = {}
        found: list[list[Match]] = []
        for index, envelope in enumerate(batch):
            try:
                found.append(self._evaluate(envelope.payload))
            except Exception as exc:  # noqa: BLE001 - a bug or a pathological item: this record only
                failures[index] = exc
                found.append([])
        failures = in_order(batch, failures)  # a failed item's later neighbours wait for it
        records: list[Record] = []
        matched: list[tuple[Item, list[Match], str | None]] = []
        for index, (envelope, matches) in enumerate(zip(batch, found, strict=True)):
            if matches and index not in failures:
                parent = from_headers(envelope.message.headers)
                records += [
                    Record(MATCHES, m.topic_id, encode(m), [(TRACE_HEADER, child(parent).encode())])
                    for m in matches
                ]
                matched.append((envelope.payload, matches, parent))
        self._sink.publish(records)  # every match of the batch, one wait for all the acks
        self._metrics.count_lexicon_resets()
        for item, matches, parent in matched:
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
        return failures

    def _evaluate(self, item: Item) -> list[Match]:
        started = time.perf_counter()
        doc = Document.from_item(item)
        topics = self._table.topics  # one set for the whole item, even if a change lands meanwhile
        found, candidates, slow = topics.timed_matches(doc, self._budget)
        for topic, seconds in slow:
            self._table.disable(topic, seconds, self._budget)
        self._metrics.candidates.observe(candidates)
        now = self._clock.now()
        matches = [
            Match(topic_id=topic.id, query=topic.query, item=item, reason=reason, matched_at=now)
            for topic, reason in found
        ]
        self._metrics.evaluation_seconds.observe(time.perf_counter() - started)
        self._metrics.items_evaluated.inc()
        return matches


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    bootstrap = config.require_bootstrap()  # fail before opening anything
    try:
        compiler = Compiler.from_settings(config.matcher)
    except AliasError as exc:
        raise ConfigError(f"matcher aliases: {exc}") from exc
    registry = service_registry()
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
            items_consumer,
            ItemProcessor(table, publisher, metrics, budget=config.matcher.topic_budget),
            publisher,
            metrics.pipeline,
            "matcher",
            loop_policy(config.kafka),
            sleep=stop.wait,
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
