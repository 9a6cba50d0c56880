"""Each service's processing step against the real broker, real HTTP servers and SQLite."""

from __future__ import annotations

import ipaddress
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from newswatch.demo.feed_server import FeedServer, demo_entries
from newswatch.fetcher.http_fetch import make_client as make_fetch_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.state import FetcherStore
from newswatch.matcher.aliases import build_table
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.service import ItemProcessor
from newswatch.matcher.topic_table import TopicTable
from newswatch.matcher.topics import Compiler
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FetcherSettings, KafkaSettings
from newswatch.shared.contract import (
    ALL_TOPICS,
    DLQ,
    ITEMS,
    MATCHES,
    TOPICS,
    Item,
    Source,
    TopicDefinition,
    encode,
)
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import ConsumerLoop, LoopPolicy, Publisher, Record
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.kafka import read_records
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def publisher_for(broker: EmbeddedBroker, settings: KafkaSettings, metrics: PipelineMetrics) -> Publisher:
    return Publisher(
        producer_factory(broker.bootstrap, settings, "test"), metrics, send_timeout=5, backoff=0.1
    )


# --- fetcher ---------------------------------------------------------------------------


def test_poller_publishes_once_across_restarts_and_keeps_items_when_kafka_fails(
    aio: Aio, tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    feeds = FeedServer().start()
    now = datetime.now(UTC)
    title, entries = demo_entries(feeds.base_url, now)["/world.xml"]
    feeds.set_feed("/world.xml", title, entries)
    url = f"{feeds.base_url}/world.xml"
    settings = FetcherSettings(timeout=5)

    def poller(metrics: FetcherMetrics) -> tuple[FeedPoller, FetcherStore, Publisher]:
        store = FetcherStore(make_engine(f"sqlite:///{tmp_path}/fetcher.sqlite3"), 1000)
        pub = Publisher(
            producer_factory(broker.bootstrap, kafka_settings.model_copy(update={"send_timeout": 3.0}), "f"),
            metrics.pipeline,
            send_timeout=3,
            attempts=2,
            backoff=0.1,
        )
        client = make_fetch_client(settings, NetGuard(LOOPBACK))
        return FeedPoller(client, store, pub, metrics, settings, Health()), store, pub

    try:
        m = FetcherMetrics(CollectorRegistry())
        first, store, pub = poller(m)
        assert aio(first.poll(url)).outcome == "ok"
        assert aio(first.poll(url)).outcome == "not_modified"  # ETag honoured
        store.close()
        pub.close()
        assert len(read_records(broker.bootstrap, ITEMS)) == 3

        # "Restart": new store object on the same file, feed changed so the body is new.
        feeds.add_entry(
            "/world.xml", entries[0].__class__("new-1", "Fresh story", "Body", f"{feeds.base_url}/n", now)
        )
        m2 = FetcherMetrics(CollectorRegistry())
        second, store, pub = poller(m2)
        assert aio(second.poll(url)).outcome == "ok"
        published = [json.loads(r.value)["title"] for r in read_records(broker.bootstrap, ITEMS)]
        assert published.count("Fresh story") == 1 and len(published) == 4
        assert m2.items_duplicate.labels("seen")._value.get() == 3

        # Kafka down: the poll fails, nothing is marked seen, the next poll after recovery publishes it.
        feeds.add_entry(
            "/world.xml", entries[0].__class__("new-2", "Second story", "B", f"{feeds.base_url}/m", now)
        )
        broker.stop()
        assert aio(second.poll(url)).outcome == "publish_error"
        broker.start()
        ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
        assert aio(second.poll(url)).outcome == "ok"  # validators were not saved: a full fetch, not a 304
        titles = [json.loads(r.value)["title"] for r in read_records(broker.bootstrap, ITEMS)]
        assert titles == ["Second story"]  # the restarted broker is empty; only the missed item is new
        store.close()
        pub.close()
    finally:
        feeds.stop()


# --- matcher ---------------------------------------------------------------------------


def item(item_id: str, title: str, summary: str = "") -> Item:
    return Item(
        item_id=item_id,
        title=title,
        summary=summary,
        fetched_at=NOW,
        url=f"http://127.0.0.1/{item_id}",
        source=Source(feed_url="http://127.0.0.1/feed.xml", feed_title="Feed", host="127.0.0.1"),
    )


def topic_record(topic_id: str, query: str | None) -> Record:
    value = encode(TopicDefinition(id=topic_id, query=query, updated_at=NOW)) if query is not None else None
    return Record(TOPICS, topic_id, value)


def test_matcher_loads_topics_live_matches_and_dead_letters_poison(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    registry = CollectorRegistry()
    m = MatcherMetrics(registry)

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    pub = publisher_for(broker, kafka_settings, m.pipeline)
    pub.publish(
        [
            topic_record("nk", "North Korea Ukraine deployment"),
            topic_record("old", "volcano"),
            topic_record("old", None),
            topic_record("bad", "Korea NEAR/3"),
        ]
    )
    stop = threading.Event()
    table = TopicTable(
        make_consumer(broker.bootstrap, kafka_settings, None, "table"), m, Compiler(build_table())
    )
    table.assign(stop)
    table.catch_up(stop)
    assert {t.id for t in table.topics} == {"nk"}  # tombstone deleted "old", "bad" refused
    assert sample("newswatch_matcher_topic_errors_total", reason="compile") == 1

    consumer = make_consumer(broker.bootstrap, kafka_settings, "matcher-test", "m")
    consumer.subscribe([ITEMS])
    loop = ConsumerLoop(
        consumer, ItemProcessor(table, pub, m), pub, m.pipeline, "matcher", LoopPolicy(poll_timeout_ms=200)
    )
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(ITEMS, key=b"x", value=b"{not json").get(10)
    producer.send(
        ITEMS, key=b"y", value=encode(item("y" * 16, "North Korean troops deployed to Ukraine"))
    ).get(10)
    wait_for(
        lambda: loop.run_once() is not None and sample("newswatch_matcher_items_evaluated_total") >= 1,
        40,
        interval=0.01,
        what="item evaluated",
    )

    # A topic redefined live is used for the next item; a bad redefinition keeps the old one.
    pub.publish([topic_record("heat", "heatwave Europe"), topic_record("nk", "(broken")])

    def heat_loaded() -> bool:
        table.poll(200)
        return table.topics.get("heat") is not None

    wait_for(heat_loaded, 20, what="live topic")
    assert table.topics.get("nk") is not None
    producer.send(ITEMS, key=b"z", value=encode(item("z" * 16, "Heatwave grips Europe"))).get(10)
    wait_for(
        lambda: loop.run_once() is not None and sample("newswatch_matcher_items_evaluated_total") >= 2,
        30,
        interval=0.01,
        what="second item",
    )
    producer.close()
    consumer.close()
    table.close()

    matches = [json.loads(r.value) for r in read_records(broker.bootstrap, MATCHES)]
    assert sorted((x["topic_id"], x["item"]["item_id"]) for x in matches) == [
        ("heat", "z" * 16),
        ("nk", "y" * 16),
    ]
    nk_match = next(x for x in matches if x["topic_id"] == "nk")
    assert nk_match["reason"]["terms"]["deployment"] == ["deployed"]
    assert nk_match["reason"]["score"] > 0 and nk_match["reason"]["highlights"]
    assert sample("newswatch_matcher_topic_matches_total", topic="nk") == 1
    assert sample("newswatch_matcher_topic_matches_total", topic="heat") == 1
    assert sample("newswatch_matcher_candidates_sum") >= 2  # each matching item had its topic as candidate
    assert sample("newswatch_matcher_topics") == 2 and sample("newswatch_matcher_topics_unindexed") == 0
    assert sample("newswatch_matcher_presearch_pairs") > 0
    dlq = read_records(broker.bootstrap, DLQ)
    assert len(dlq) == 1 and dlq[0].value == b"{not json"
    headers = {k: v.decode() for k, v in dlq[0].headers}
    assert headers["source_topic"] == ITEMS and headers["error_type"] == "ContractError"
    assert "not valid UTF-8 JSON" in headers["error"] and headers["service"] == "matcher"
    pub.close()
