"""The fetcher process: schedules a poll per feed with APScheduler until stopped."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS
from newswatch.shared.db import database_url, make_engine
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_io import Publisher, ensure_topics, producer_factory
from newswatch.shared.netguard import NetGuard

log = logging.getLogger(__name__)


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    """Run until ``stop`` is set; in-flight polls finish before returning."""
    bootstrap = config.require_bootstrap()  # fail before opening anything
    registry = CollectorRegistry()
    metrics = FetcherMetrics(registry)
    health = Health()
    server = ObservabilityServer(config.http.host, http_port, registry, health)
    server.start()
    log.info("fetcher starting", extra={"http_port": server.port, "feeds": len(config.feeds)})
    store = FetcherStore(
        make_engine(database_url(config.database_url, config.state_dir, "fetcher")),
        config.fetcher.seen_per_feed,
        url_window=config.fetcher.url_dedup_window,
    )
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-fetcher"),
        metrics.pipeline,
        config.kafka.send_timeout,
    )
    client = make_client(config.fetcher, NetGuard(config.allow_networks))
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(config.fetcher.concurrency)}, timezone=UTC
    )
    try:
        health.set_not_ready("creating Kafka topics")
        ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
        poller = FeedPoller(client, store, publisher, metrics, config.fetcher, health)
        for feed in config.feeds:
            scheduler.add_job(
                poller.poll,
                IntervalTrigger(seconds=feed.interval, jitter=min(feed.interval * 0.1, 30.0)),
                args=[feed.url],
                id=feed.url,
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        metrics.feeds.set(len(config.feeds))
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
