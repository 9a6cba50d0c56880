"""Slow servers hold sockets, not threads: one fast feed is polled while 20 slow ones hang.

The fetch is async; only parsing, publishing and state writes use the (here: 2) worker
threads. With a thread per fetch, 20 hanging servers would have blocked the fast feed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from newswatch.fetcher.http_fetch import Validators, make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.politeness import HostLimiter
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.schedule import Policy
from newswatch.fetcher.service import FeedScheduler
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FeedConfig, FetcherSettings, KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.http import Reply, Route, serve
from tests.support.kafka import read_json

pytestmark = pytest.mark.integration
SLOW = 20
RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Fast</title>'
    b"<item><title>Fast news</title><guid>fast-1</guid><link>https://news.example/fast-1</link></item>"
    b"</channel></rss>"
)


def test_slow_servers_do_not_hold_up_other_feeds(
    aio: Aio, tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    release = threading.Event()
    hanging = threading.Semaphore(0)

    def slow(_headers: dict[str, str]) -> Reply:
        hanging.release()
        release.wait(30)  # bounded: the test releases it, or the fetch times out
        return Reply(200, RSS.replace(b"Fast", b"Slow"))

    routes: dict[str, Route] = {f"/slow{i}.xml": slow for i in range(SLOW)}
    routes["/fast.xml"] = lambda _h: Reply(200, RSS, {"Content-Type": "application/rss+xml"})
    settings = FetcherSettings(timeout=20, concurrency=SLOW + 4, workers=2, per_host=SLOW + 4)
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(f"sqlite:///{tmp_path}/f.sqlite3"), 100)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "c"), metrics.pipeline, send_timeout=5
    )
    workers = ThreadPoolExecutor(settings.workers)
    client = make_client(settings, NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
    poller = FeedPoller(client, store, publisher, metrics, settings, Health(), workers)

    async def scenario(base: str) -> tuple[int, int]:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start(paused=True)
        feeds = FeedScheduler(
            scheduler, poller, HostLimiter(settings.per_host), settings.concurrency, Policy(60, 3600), metrics
        )
        now = datetime.now(UTC)
        slow_polls = [
            asyncio.create_task(feeds._run(FeedConfig(url=f"{base}/slow{i}.xml"), now)) for i in range(SLOW)
        ]
        loop = asyncio.get_running_loop()
        for _ in range(SLOW):  # every slow server has its request, and holds it
            assert await loop.run_in_executor(None, hanging.acquire, True, 15)
        await asyncio.wait_for(feeds._run(FeedConfig(url=f"{base}/fast.xml"), now), 15)
        fast_done = metrics.polls.labels("ok")._value.get()
        still_hanging = sum(not t.done() for t in slow_polls)
        release.set()
        await asyncio.wait_for(asyncio.gather(*slow_polls), 30)
        scheduler.shutdown(wait=False)
        return int(fast_done), still_hanging

    try:
        with serve(routes) as (base, _seen):
            fast_done, still_hanging = aio(scenario(base))
    finally:
        release.set()
        aio(client.aclose())
        workers.shutdown()
        publisher.close()
        store.close()
    assert (fast_done, still_hanging) == (1, SLOW)
    assert metrics.polls.labels("ok")._value.get() == SLOW + 1
    # The slow feeds carry the fast story's link: published once, the others are also_in.
    assert [i["title"] for i in read_json(broker.bootstrap, ITEMS)] == ["Fast news"]
    assert metrics.items_duplicate.labels("same_url")._value.get() == SLOW


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(1)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_a_repeated_304_is_handled_on_the_event_loop(aio: Aio, tmp_path: Path) -> None:
    """Most polls are 304s with nothing to record: they must not queue behind parsing work."""

    def feed(headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(200, RSS, {"ETag": '"v1"', "Content-Type": "application/rss+xml"})

    settings = FetcherSettings(timeout=5)
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(f"sqlite:///{tmp_path}/f.sqlite3"), 100)
    workers = CountingExecutor()
    client = make_client(settings, NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
    poller = FeedPoller(client, store, None, metrics, settings, Health(), workers)  # type: ignore[arg-type]
    try:
        with serve({"/feed.xml": feed}) as (base, _seen):
            store.record_success(f"{base}/feed.xml", Validators(etag='"v1"'))  # as after a full poll
            outcomes = [aio(poller.poll(f"{base}/feed.xml")).outcome for _ in range(3)]
    finally:
        aio(client.aclose())
        workers.shutdown()
        store.close()
    assert outcomes == ["not_modified"] * 3
    assert workers.submitted == 0
