"""The notifier process: matches in, webhook alerts out (and on ``newswatch.alerts``)."""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry

from newswatch.notifier.handler import MatchHandler
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.store import DeliveryStore
from newswatch.notifier.webhook import make_client
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS, MATCHES
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_io import ConsumerLoop, Publisher, ensure_topics, make_consumer, producer_factory
from newswatch.shared.netguard import NetGuard

log = logging.getLogger(__name__)
GROUP_ID = "newswatch-notifier"


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    bootstrap = config.require_bootstrap()  # fail before opening anything
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    health = Health(
        stall_after=max(60.0, config.notifier.retry_backoff_max * config.notifier.max_attempts * 2)
    )
    server = ObservabilityServer(config.http.host, http_port, registry, health)
    server.start()
    log.info(
        "notifier starting", extra={"http_port": server.port, "subscriptions": len(config.subscriptions)}
    )
    store = DeliveryStore(config.state_dir / "notifier.sqlite3")
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-notifier"),
        metrics.pipeline,
        config.kafka.send_timeout,
    )
    client = make_client(config.notifier.timeout, NetGuard(config.allow_networks), config.fetcher.user_agent)
    consumer = None
    try:
        health.set_not_ready("creating Kafka topics")
        ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
        consumer = make_consumer(bootstrap, config.kafka, GROUP_ID, "newswatch-notifier")
        consumer.subscribe([MATCHES])
        handler = MatchHandler(config.subscriptions, store, publisher, client, metrics, config.notifier, stop)
        loop = ConsumerLoop(consumer, handler, metrics.pipeline, sleep=stop.wait)
        if not config.subscriptions:
            log.warning("no subscriptions configured; matches will not be delivered anywhere")
        health.set_not_ready("joining consumer group")
        while not stop.is_set():
            loop.run_once()
            health.beat()
            if consumer.assignment():
                health.set_ready()
    finally:
        health.set_not_ready("stopping")
        if consumer is not None:
            consumer.close()
        publisher.close()
        client.close()
        store.close()
        server.stop()
        log.info("notifier stopped")
