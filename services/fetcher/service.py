"""The fetcher process: polls every feed on its own schedule (APScheduler) until stopped.

Each poll schedules the feed's next poll from its outcome (adaptive interval, publisher
hints, backoff), so there is one pending job per feed and 10,000 feeds cost 10,000 small
jobs, spread out by jitter instead of firing on the same second.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from prometheus_client import CollectorRegistry

from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.politeness import HostLimiter
from newswatch.fetcher.poller import FeedPoller, PollResult
from newswatch.fetcher.schedule import Policy, next_after_error, next_after_success
from newswatch.fetcher.state import STATUSES, FetcherStore
from newswatch.shared.config import Config, FeedConfig
from newswatch.shared.contract import ALL_TOPICS
from newswatch.shared.db import database_url, make_engine
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_io import Publisher, ensure_topics, producer_factory
from newswatch.shared.netguard import NetGuard

log = logging.getLogger(__name__)


class FeedScheduler:
    """Runs a poll per feed and schedules the feed's next one from the poll's result."""

    def __init__(
        self,
        scheduler: BackgroundScheduler,
        poller: FeedPoller,
        limiter: HostLimiter,
        policy: Policy,
        metrics: FetcherMetrics,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._scheduler = scheduler
        self._poller = poller
        self._limiter = limiter
        self._policy = policy
        self._metrics = metrics
        self._now = now
        self._rand = rand
        self._lock = threading.Lock()
        self._status: dict[str, str] = {}
        self._learned: dict[str, PollResult] = {}  # last full poll per feed: its gap and hints

    def start(self, feed: FeedConfig, status: str, spread: float) -> None:
        self._set_status(feed.url, status)
        if status == "gone":
            log.warning("feed answered 410 Gone earlier and is not polled", extra={"feed": feed.url})
            return
        delay = self._rand() * min(spread, feed.interval or self._policy.min_interval)
        self._schedule(feed, self._now() + timedelta(seconds=delay))

    def _schedule(self, feed: FeedConfig, when: datetime) -> None:
        self._scheduler.add_job(
            self._run,
            DateTrigger(when),
            args=[feed, when],
            id=feed.url,
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _run(self, feed: FeedConfig, planned: datetime) -> None:
        self._metrics.schedule_lag.observe(max(0.0, (self._now() - planned).total_seconds()))
        with self._limiter.slot(feed.url):
            result = self._poller.poll(feed.url)
        self._set_status(feed.url, result.status)
        if result.status == "gone":
            return
        now = self._now()
        if result.outcome == "ok":
            self._learned[feed.url] = result
        if result.ok:  # a 304 carries no entries: plan from what the last full poll showed
            learned = self._learned.get(feed.url, result)
            when = next_after_success(
                now, feed.interval, learned.gap, learned.hints, self._policy, self._rand
            )
        else:
            base = feed.interval or self._policy.min_interval
            when = next_after_error(
                now, max(1, result.failures), base, result.retry_after, self._policy, self._rand
            )
        self._schedule(feed, when)

    def _set_status(self, url: str, status: str) -> None:
        with self._lock:
            self._status[url] = status
            counts = Counter(self._status.values())
        for name in STATUSES:
            self._metrics.feeds.labels(name).set(counts.get(name, 0))


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    """Run until ``stop`` is set; in-flight polls finish before returning."""
    bootstrap = config.require_bootstrap()  # fail before opening anything
    registry = CollectorRegistry()
    metrics = FetcherMetrics(registry)
    health = Health()
    server = ObservabilityServer(config.http.host, http_port, registry, health)
    server.start()
    log.info("fetcher starting", extra={"http_port": server.port, "feeds": len(config.feeds)})
    settings = config.fetcher
    store = FetcherStore(
        make_engine(database_url(config.database_url, config.state_dir, "fetcher")),
        settings.seen_per_feed,
        url_window=settings.url_dedup_window,
    )
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-fetcher"),
        metrics.pipeline,
        config.kafka.send_timeout,
    )
    client = make_client(settings, NetGuard(config.allow_networks))
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(settings.concurrency)}, timezone=UTC
    )
    try:
        health.set_not_ready("creating Kafka topics")
        ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
        poller = FeedPoller(client, store, publisher, metrics, settings, health)
        policy = Policy(settings.min_interval, settings.max_interval, settings.unhealthy_after)
        feeds = FeedScheduler(scheduler, poller, HostLimiter(settings.per_host), policy, metrics)
        for feed in config.feeds:
            feeds.start(feed, store.feed_state(feed.url).status, settings.start_spread)
        scheduler.start()
        health.set_ready()
        if not config.feeds:
            log.warning("no feeds configured; add some under `feeds:` in the config file")
        while not stop.wait(1.0):
            health.beat()
    finally:
        health.set_not_ready("stopping")
        if scheduler.running:
            scheduler.shutdown(wait=True)
        publisher.close()
        client.close()
        store.close()
        server.stop()
        log.info("fetcher stopped")
