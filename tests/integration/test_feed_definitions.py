"""Runtime feed definitions are stored state: the fetcher keeps every ``newswatch.feeds``
record in its database (SQLite and PostgreSQL), starts from what it stored, never lets an
older record replace a newer one, and publishes again what a broker lost (start-up and the
periodic check), with the real broker."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from newswatch.fetcher.feed_repair import publish_definitions, repair
from newswatch.fetcher.feed_table import FeedTable
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FeedConfig, KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, FEEDS, FeedDefinition, encode
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.processes import free_port
from newswatch.shared.table import live_keys
from tests.support.waiting import wait_for

T1 = datetime(2026, 12, 1, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
A, B, C = "https://a.example/feed", "https://b.example/feed", "https://config.example/feed"


def _definition(
    url: str, at: datetime, state: str = "active", interval: float | None = 60.0
) -> FeedDefinition:
    return FeedDefinition(url=url, state=state, interval=interval, updated_at=at)  # type: ignore[arg-type]


def _table(broker: EmbeddedBroker, kafka: KafkaSettings, store: FetcherStore) -> FeedTable:
    table = FeedTable(
        make_consumer(broker.bootstrap, kafka, None, "test-feeds"),
        [FeedConfig(url=C)],
        stored=store.definitions(),
    )
    table.load(threading.Event())
    return table


def _publisher(broker: EmbeddedBroker, kafka: KafkaSettings, metrics: FetcherMetrics) -> Publisher:
    return Publisher(producer_factory(broker.bootstrap, kafka, "test"), metrics.pipeline, send_timeout=5)


def test_definitions_are_stored_and_survive_a_broker_that_lost_them(
    db_url: str, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    registry = CollectorRegistry()
    metrics = FetcherMetrics(registry)
    store = FetcherStore(make_engine(db_url), 100)
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    publisher = _publisher(broker, kafka_settings, metrics)
    publisher.publish(
        [Record(FEEDS, A, encode(_definition(A, T1))), Record(FEEDS, B, encode(_definition(B, T1, "paused")))]
    )
    table = _table(broker, kafka_settings, store)
    store.keep_definitions(table.take_changes())
    table.close()
    publisher.close()
    assert {d.url: d.state for d in store.definitions()} == {A: "active", B: "paused"}
    assert table.missing_on_topic() == []  # the topic had them all

    # A new, empty broker (the embedded one after a restart): the store still knows the feeds.
    empty = EmbeddedBroker(free_port())
    empty.start()
    try:
        ensure_topics(empty.bootstrap, kafka_settings, ALL_TOPICS)
        table = _table(empty, kafka_settings, store)
        assert sorted(table.mine()) == [A, C]  # B is paused
        missing = table.missing_on_topic()
        assert [d.url for d in missing] == [A, B]
        publisher = _publisher(empty, kafka_settings, metrics)
        assert publish_definitions(publisher, missing, metrics) == 2
        assert registry.get_sample_value("newswatch_fetcher_feed_definitions_republished_total") == 2
        on_topic = live_keys(
            make_consumer(empty.bootstrap, kafka_settings, None, "t"), FEEDS, threading.Event()
        )
        assert on_topic == {A, B}
        # The periodic check finds nothing missing now; a further change on the topic is stored.
        assert repair(store, publisher, empty.bootstrap, kafka_settings, metrics, threading.Event()) == 0
        publisher.publish([Record(FEEDS, B, encode(_definition(B, T2, "active", 30.0)))])
        wait_for(table.poll, 20, interval=0.1, what="the change on the topic")
        store.keep_definitions(table.take_changes())
        assert {d.url: (d.state, d.interval) for d in store.definitions()}[B] == ("active", 30.0)
        table.close()
        publisher.close()
    finally:
        empty.stop()
    store.close()


def test_an_older_record_never_replaces_a_newer_definition(
    db_url: str, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(db_url), 100)
    store.keep_definitions({A: _definition(A, T2, "paused")})
    store.keep_definitions({A: _definition(A, T1, "active")})  # older: ignored
    assert [d.state for d in store.definitions()] == ["paused"]
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    publisher = _publisher(broker, kafka_settings, metrics)
    publisher.publish([Record(FEEDS, A, encode(_definition(A, T1, "active")))])  # stale copy on the topic
    table = _table(broker, kafka_settings, store)
    assert A not in table.mine()  # the stored pause wins
    assert [d.state for d in table.missing_on_topic()] == ["paused"]  # the newer one goes out again
    assert repair(store, publisher, broker.bootstrap, kafka_settings, metrics, threading.Event()) == 0
    publisher.publish([Record(FEEDS, A, None)])  # a tombstone forgets the URL's definition
    wait_for(table.poll, 20, interval=0.1, what="the tombstone")
    store.keep_definitions(table.take_changes())
    assert store.definitions() == []
    table.close()
    publisher.close()
    store.close()
