"""Dedup, revisions and first-poll backfill through the real poll path (broker, HTTP, both databases)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FetcherSettings, KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.kafka import read_json

pytestmark = pytest.mark.integration


def entry(guid: str, title: str, link: str, hours_ago: float, summary: str = "Text.") -> FeedEntry:
    return FeedEntry(guid, title, summary, link, datetime.now(UTC) - timedelta(hours=hours_ago))


def test_dedup_revisions_and_backfill(
    aio: Aio, db_url: str, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    feeds = FeedServer().start()
    base = feeds.base_url
    story = "https://news.example/world/story-1"
    feeds.set_feed(
        "/a.xml",
        "Agency A",
        [
            entry("a1", "Summit ends without deal", story + "?utm_source=a", 1),
            entry("a-old", "Last week's news", "https://news.example/old", 72),
        ],
    )
    feeds.set_feed("/b.xml", "Paper B", [entry("b1", "Summit ends without deal", story + "#comments", 1)])
    settings = FetcherSettings(timeout=5, backfill=86400, backfill_max_items=20)
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(db_url), 1000)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "d"), metrics.pipeline, send_timeout=5
    )
    client = make_client(settings, NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
    poller = FeedPoller(client, store, publisher, metrics, settings, Health())
    try:
        assert aio(poller.poll(f"{base}/a.xml")).outcome == "ok"
        assert aio(poller.poll(f"{base}/b.xml")).outcome == "ok"
        # The story's title changes materially; a cosmetic change elsewhere does not count.
        feeds.set_feed(
            "/a.xml",
            "Agency A",
            [
                entry("a1", "Summit ends with a deal after all", story, 1),
                entry("a-old", "LAST WEEK'S NEWS!", "https://news.example/old", 72),
            ],
        )
        assert aio(poller.poll(f"{base}/a.xml")).outcome == "ok"
        assert aio(poller.poll(f"{base}/a.xml")).outcome == "not_modified"
    finally:
        aio(client.aclose())
        publisher.close()
        feeds.stop()
    published = [
        (i["title"], i["kind"], i["revision"], i["source"]["feed_url"])
        for i in read_json(broker.bootstrap, ITEMS)
    ]
    assert published == [
        ("Summit ends without deal", "new", 1, f"{base}/a.xml"),
        ("Summit ends with a deal after all", "update", 2, f"{base}/a.xml"),
    ]
    assert store.also_in("https://news.example/world/story-1") == [f"{base}/b.xml"]
    assert metrics.items_backfill_skipped._value.get() == 1  # last week's item on the first poll
    assert metrics.items_duplicate.labels("same_url")._value.get() == 1
    assert metrics.items_updated._value.get() == 1
    store.close()
