"""The notifier process: matches in; alerts out on every channel, once per story; the API.

Threads: the consumer loop (this thread) routes matches into the database; a sender loop
builds due digests and hands due deliveries to the sender pool; the API server (uvicorn)
serves ``notifier.api_port``; the observability server serves /metrics and health.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from newswatch.notifier.api import ApiContext
from newswatch.notifier.catalog import Catalog
from newswatch.notifier.channels import channels, destination_refusal
from newswatch.notifier.database import open_db
from newswatch.notifier.dispatcher import Dispatcher
from newswatch.notifier.errors import IdTakenError
from newswatch.notifier.intake import MatchProcessor, Routes
from newswatch.notifier.mailer import Mailer
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.router import Router
from newswatch.notifier.site import ApiServer, make_app
from newswatch.notifier.stream import AlertHub, AlertTail
from newswatch.notifier.topic_repair import publish_topics, repair
from newswatch.notifier.webhook import make_client
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS, MATCHES
from newswatch.shared.errors import ConfigError
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import ConsumerLoop, Publisher, loop_policy
from newswatch.shared.metrics import service_registry
from newswatch.shared.netguard import NetGuard, install_urllib3_guard
from newswatch.shared.runtime import drain_budget
from newswatch.shared.table import Every

log = logging.getLogger(__name__)
GROUP_ID = "newswatch-notifier"
CONFIG_OWNER = "config"
#: Delivery log and dedup index retention beyond the dedup window.
LOG_RETENTION = 30 * 86400.0


def reconcile(catalog: Catalog, config: Config, guard: NetGuard | None = None) -> None:
    """The config file's topics and subscriptions into the database (owner ``config``).

    The config never takes over what an API user made: an id held (or once held) by another
    owner stops the start with a configuration error naming it, rather than adopting that
    user's subscription, its signing secret or its delivery log."""
    for index, topic in enumerate(config.topics):
        try:
            catalog.put_topic(topic.id, topic.query, CONFIG_OWNER)
        except IdTakenError as exc:
            raise ConfigError(
                f"topics[{index}]: {exc} by an API user; give the config's topic another id"
            ) from exc
    for index, sub in enumerate(config.subscriptions):
        refused = destination_refusal(sub.to, guard) if guard is not None else None
        if refused:
            raise ConfigError(f"subscriptions[{index}].to: {refused}")
        try:
            catalog.put_subscription(sub, CONFIG_OWNER)
        except IdTakenError as exc:
            raise ConfigError(
                f"subscriptions[{index}]: {exc} by an API user; give the config's subscription another id"
            ) from exc


class SenderLoop(threading.Thread):
    """Claims due deliveries and builds due digests until ``stop``; woken early when the router
    queued something or sends finished (room for more)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        stop: threading.Event,
        wake: threading.Event,
        housekeeping: Sequence[Callable[[], object]] = (),
    ) -> None:
        super().__init__(name="notifier-claim", daemon=True)
        self.dispatcher = dispatcher
        self.housekeeping = housekeeping  # hourly: ended sessions, spent links
        self.wake = wake
        self._halt = stop

    def run(self) -> None:
        gauges_at = digests_at = 0.0
        pruned_at = time.monotonic()
        while not self._halt.is_set():
            self.wake.clear()  # before the work: a wake set during it runs the loop again at once
            try:
                now = time.monotonic()
                if now - digests_at >= 1.0:  # digests are due to the minute at most
                    self.dispatcher.build_digests()
                    digests_at = now
                self.dispatcher.claim()
                if now - gauges_at > 5.0:
                    self.dispatcher.refresh_gauges()
                    gauges_at = now
                if now - pruned_at > 3600.0:
                    self.dispatcher.prune(LOG_RETENTION)
                    for prune in self.housekeeping:
                        prune()
                    pruned_at = now
            except Exception:  # a database outage: log, wait, go on (rows stay in the outbox)
                log.exception("sender loop iteration failed")
            self.wake.wait(0.25)


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    bootstrap = config.require_bootstrap()  # fail before opening anything
    registry = service_registry()
    metrics = NotifierMetrics(registry)
    health = Health(stall_after=120.0)
    server = ObservabilityServer(config.http.host, http_port, registry, health)
    server.start()
    db = open_db(config)
    log.info("notifier starting", extra={"http_port": server.port, "database": db.dialect})
    guard = NetGuard(config.allow_networks)
    install_urllib3_guard(guard)  # Apprise's HTTP plugins connect through urllib3
    reconcile(db.catalog, config, guard)
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-notifier"),
        metrics.pipeline,
        config.kafka.send_timeout,
    )
    settings = config.notifier
    client = make_client(settings.timeout, guard, config.fetcher.user_agent, settings.senders)
    blocking = ThreadPoolExecutor(settings.senders, thread_name_prefix="notifier-send")
    routes = Routes(db.catalog)
    wake = threading.Event()
    mailer = Mailer(settings.smtp, guard)
    links: list[ApiContext] = []  # the API's context, once it is bound: it knows the public URL

    def unsubscribe_url(subscription_id: str) -> str | None:
        token = db.capabilities.get("unsubscribe", subscription_id)
        return f"{links[0].public_url()}/u/{token}" if links else None

    dispatcher = Dispatcher(
        db.outbox,
        channels(client, mailer, blocking, unsubscribe_url),
        publisher,
        metrics,
        settings,
        subscriptions=routes.subscription,
        wake=wake.set,
    )
    sender = SenderLoop(
        dispatcher, stop, wake, housekeeping=(db.sessions.prune, db.links.prune, db.activity.prune)
    )
    api = None
    consumer = None
    try:
        health.set_not_ready("creating Kafka topics")
        ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
        published = publish_topics(db.catalog, publisher)
        log.info("topics re-published from the database", extra={"topics": published})
        hub = AlertHub(settings.stream_clients, settings.stream_clients_per_owner)
        AlertTail(bootstrap, config.kafka, hub, stop).start()
        Every(
            "notifier-topic-check",
            partial(repair, db.catalog, publisher, bootstrap, config.kafka, metrics, stop),
            settings.topics_check,
            stop,
        ).start()
        context = ApiContext(
            db,
            publisher,
            routes,
            config,
            hub,
            guard=guard,
            mailer=mailer,
            metrics=metrics,
            send_test=lambda sub, match: dispatcher.send_test(sub, match, settings.timeout + 5.0),
        )
        api = ApiServer(make_app(context), config.http.host, config.http.api_port)
        api.start()
        context.bound_url = f"http://{config.http.host}:{api.bound_port}"
        links.append(context)
        log.info(
            "notifier API and web app listening",
            extra={"api_port": api.bound_port, "public_url": context.public_url()},
        )
        consumer = make_consumer(bootstrap, config.kafka, GROUP_ID, "newswatch-notifier")
        consumer.subscribe([MATCHES])
        intake = MatchProcessor(
            routes,
            Router(db.outbox, settings, dispatcher.lease),
            metrics,
            handoff=dispatcher,
            wake=wake.set,
            activity=db.activity,
        )
        loop = ConsumerLoop(
            consumer,
            intake,
            publisher,
            metrics.pipeline,
            "notifier",
            loop_policy(config.kafka),
            sleep=stop.wait,
        )
        sender.start()
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
        wake.set()
        if sender.is_alive():
            sender.join(timeout=5)
        dispatcher.close(wait=min(settings.timeout, drain_budget(config.stop_grace)))
        blocking.shutdown(wait=False, cancel_futures=True)
        if api is not None:
            api.stop()
        publisher.close()
        db.close()
        server.stop()
        log.info("notifier stopped")
