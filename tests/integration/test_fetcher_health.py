"""Feed health through the real poll path: redirects, 410, 429, failures in a row, recovery."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.politeness import HostLimiter
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.schedule import Policy
from newswatch.fetcher.service import FeedScheduler
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FeedConfig, FetcherSettings, KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, FEED_HEALTH
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.http import Reply, serve
from tests.support.kafka import read_json

pytestmark = pytest.mark.integration
RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><ttl>30</ttl>'
    b"<item><guid>1</guid><title>One</title></item></channel></rss>"
)


def test_feed_health_transitions(
    aio: Aio, tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    flaky_calls = {"n": 0}

    def flaky(_h: dict[str, str]) -> Reply:
        flaky_calls["n"] += 1
        return Reply(500) if flaky_calls["n"] <= 3 else Reply(200, RSS)

    routes = {
        "/moved": lambda _h: Reply(301, b"", {"Location": "/feed"}),
        "/feed": lambda _h: Reply(200, RSS, {"Cache-Control": "max-age=60"}),
        "/gone": lambda _h: Reply(410),
        "/busy": lambda _h: Reply(429, b"", {"Retry-After": "120"}),
        "/flaky": flaky,
    }
    settings = FetcherSettings(timeout=5, unhealthy_after=3)
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(f"sqlite:///{tmp_path}/f.sqlite3"), 100)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "h"), metrics.pipeline, send_timeout=5
    )
    client = make_client(settings, NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
    poller = FeedPoller(client, store, publisher, metrics, settings, Health())
    with serve(routes) as (base, seen):
        try:
            moved = aio(poller.poll(f"{base}/moved"))
            assert moved.outcome == "ok"
            assert moved.hints.min_seconds == 1800  # ttl 30 min beats max-age 60 s
            assert store.feed_state(f"{base}/moved").current_url == f"{base}/feed"
            seen.clear()
            # Same bytes and no validators: the body is not parsed again.
            assert aio(poller.poll(f"{base}/moved")).outcome == "unchanged"
            assert [p for p, _ in seen] == ["/feed"]  # the stored URL is polled, not the old one

            gone = aio(poller.poll(f"{base}/gone"))
            assert (gone.outcome, gone.status) == ("http_error", "gone")

            busy = aio(poller.poll(f"{base}/busy"))
            assert (busy.outcome, busy.retry_after, busy.status) == ("http_error", 120.0, "active")

            statuses = [aio(poller.poll(f"{base}/flaky")).status for _ in range(4)]
            assert statuses == ["active", "active", "unhealthy", "active"]
            assert store.feed_state(f"{base}/flaky").failures == 0

            # The scheduler: a gone feed is not scheduled again; others get one pending job.
            async def schedule() -> float:
                scheduler = AsyncIOScheduler(timezone=UTC)
                scheduler.start(paused=True)
                feeds = FeedScheduler(scheduler, poller, HostLimiter(2), 4, Policy(60, 3600), metrics)
                feeds.start(FeedConfig(url=f"{base}/gone"), "gone", 10)
                feeds.start(FeedConfig(url=f"{base}/feed", interval=5), "active", 10)
                assert scheduler.get_job(f"{base}/gone") is None
                assert scheduler.get_job(f"{base}/feed") is not None
                await feeds._run(FeedConfig(url=f"{base}/feed", interval=5), datetime.now(UTC))
                job = scheduler.get_job(f"{base}/feed")
                assert job is not None
                scheduler.shutdown(wait=False)
                return float((job.trigger.run_date - datetime.now(UTC)).total_seconds())

            delay = aio(schedule())
            assert 1800 * 0.8 - 5 <= delay <= 3600  # the publisher's ttl (30 min) is honoured
            assert metrics.feeds.labels("gone")._value.get() == 1
        finally:
            aio(client.aclose())
            publisher.close()
            store.close()
    events: dict[str, list[tuple[str, int]]] = {}
    for event in read_json(broker.bootstrap, FEED_HEALTH):  # ordered per feed (the key), not across feeds
        events.setdefault(event["feed_url"].rsplit("/", 1)[-1], []).append(
            (event["status"], event["failures"])
        )
    assert events == {"gone": [("gone", 1)], "flaky": [("unhealthy", 3), ("active", 0)]}
    assert metrics.polls.labels("http_error")._value.get() == 5
