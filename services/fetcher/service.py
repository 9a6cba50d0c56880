"""The fetcher process: polls every feed on its own schedule (APScheduler) until stopped.

Each poll schedules the feed's next poll from its outcome (adaptive interval, publisher
hints, backoff), so there is one pending job per feed and 10,000 feeds cost 10,000 small
jobs, spread out by jitter instead of firing on the same second. Jobs are coroutines on one
event loop: ``concurrency`` fetches are in flight at once (at most ``per_host`` per host),
while parsing, publishing and the state database use ``workers`` threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from newswatch.fetcher.feed_repair import publish_definitions, repair
from newswatch.fetcher.feed_table import FeedTable
from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.politeness import HostLimiter
from newswatch.fetcher.poller import FeedPoller, PollResult
from newswatch.fetcher.recovery import settle_journal
from newswatch.fetcher.schedule import Policy, next_after_error, next_after_success
from newswatch.fetcher.state import STATUSES, FetcherStore
from newswatch.fetcher.websub_store import WebSubStore
from newswatch.fetcher.websub_subscriber import PUSH_TIMEOUT, PushFailed, Subscriber
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import Config, FeedConfig
from newswatch.shared.contract import ALL_TOPICS, ITEMS
from newswatch.shared.db import database_url, make_engine
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.metrics import service_registry
from newswatch.shared.netguard import NetGuard
from newswatch.shared.runtime import drain_budget
from newswatch.shared.table import Every, TableReader

log = logging.getLogger(__name__)


class FeedScheduler:
    """Runs a poll per feed and schedules the feed's next one from the poll's result.

    Used from the event loop that runs ``scheduler`` (an AsyncIOScheduler).
    """

    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        poller: FeedPoller,
        limiter: HostLimiter,
        concurrency: int,
        policy: Policy,
        metrics: FetcherMetrics,
        clock: Clock = SYSTEM,
        rand: Callable[[], float] = random.random,
        push: Subscriber | None = None,
        push_poll_interval: float = 0.0,
    ) -> None:
        self._push = push
        self._push_poll_interval = push_poll_interval
        self._scheduler = scheduler
        self._poller = poller
        self._limiter = limiter
        self._slots = asyncio.Semaphore(concurrency)
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._status: dict[str, str] = {}
        self._learned: dict[str, PollResult] = {}  # last full poll per feed: its gap and hints
        self._active: dict[str, FeedConfig] = {}  # the feeds this replica polls now
        self._running: set[asyncio.Task[None]] = set()

    @property
    def feeds(self) -> dict[str, FeedConfig]:
        return dict(self._active)

    def start(self, feed: FeedConfig, status: str, spread: float) -> None:
        """Poll ``feed`` from now on (again, with its new settings, if it was already polled)."""
        self._active[feed.url] = feed
        self._set_status(feed.url, status)
        if status == "gone":
            log.warning("feed answered 410 Gone earlier and is not polled", extra={"feed": feed.url})
            return
        delay = self._rand() * min(spread, feed.interval or self._policy.min_interval)
        self._schedule(feed, self._clock.now() + timedelta(seconds=delay))

    def stop(self, url: str) -> None:
        """Stop polling ``url`` (paused or removed); a poll in flight finishes and is not rescheduled."""
        self._active.pop(url, None)
        self._status.pop(url, None)
        self._learned.pop(url, None)
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(url)
        self._set_status(url, None)
        self._poller.forget(url)
        if self._push is not None:
            self._push.forget(url)

    async def push(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """Process content a WebSub hub pushed for ``url``; False if this replica does not poll it.

        Raises PushFailed when it was not processed (the hub retries; the next poll catches up).
        """
        if url not in self._active:
            return False
        result = await self._poller.push(url, body, headers)
        if not result.ok:
            raise PushFailed(f"pushed content for {url}: {result.outcome}")
        return True

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for the polls in flight; returns how many did not finish."""
        if not self._running:
            return 0
        _done, pending = await asyncio.wait(set(self._running), timeout=grace)
        return len(pending)

    def _schedule(self, feed: FeedConfig, when: datetime) -> None:
        if self._active.get(feed.url) != feed:
            return  # stopped or replaced meanwhile
        self._scheduler.add_job(
            self._run,
            DateTrigger(when),
            args=[feed, when],
            id=feed.url,
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _run(self, feed: FeedConfig, planned: datetime) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            self._metrics.schedule_lag.observe(max(0.0, (self._clock.now() - planned).total_seconds()))
            pushed = self._push is not None and self._push.live(feed.url)
            async with self._slots, self._limiter.slot(feed.url):
                result = await self._poll(feed.url)
            if self._push is not None and result.outcome == "ok" and feed.url in self._active:
                self._push.consider(feed.url, result.hub)
                if pushed and result.published:
                    self._push.poll_found_new(feed.url)
            self._after(feed, result)
        finally:
            if task is not None:
                self._running.discard(task)

    async def _poll(self, url: str) -> PollResult:
        try:
            return await self._poller.poll(url)
        except Exception:
            # A bug must not end a feed's polling: count it, log it, and back off.
            log.exception("poll failed unexpectedly", extra={"feed": url})
            self._metrics.polls.labels("internal_error").inc()
            return PollResult("internal_error", self._status.get(url, "active"), failures=1)

    def _after(self, feed: FeedConfig, result: PollResult) -> None:
        self._set_status(feed.url, result.status)
        if result.status == "gone":
            return
        now = self._clock.now()
        if result.outcome == "ok":
            self._learned[feed.url] = result
        if result.ok:  # a 304 carries no entries: plan from what the last full poll showed
            learned = self._learned.get(feed.url, result)
            when = next_after_success(
                now, feed.interval, learned.gap, learned.hints, self._policy, self._rand
            )
            if self._push is not None and self._push.live(feed.url):  # push brings news; poll as a safety net
                when = max(when, now + timedelta(seconds=self._push_poll_interval))
        else:
            base = feed.interval or self._policy.min_interval
            when = next_after_error(
                now, max(1, result.failures), base, result.retry_after, self._policy, self._rand
            )
        self._schedule(feed, when)

    def _set_status(self, url: str, status: str | None) -> None:
        if status is not None and url in self._active:
            self._status[url] = status
        counts = Counter(self._status.values())
        for name in STATUSES:
            self._metrics.feeds.labels(name).set(counts.get(name, 0))


def run(config: Config, http_port: int, stop: threading.Event) -> None:
    """Run until ``stop`` is set; polls in flight may finish (within ``drain_budget(stop_grace)``)."""
    bootstrap = config.require_bootstrap()  # fail before opening anything
    registry = service_registry()
    metrics = FetcherMetrics(registry)
    health = Health()
    server = ObservabilityServer(config.http.host, http_port, registry, health)
    server.start()
    log.info("fetcher starting", extra={"http_port": server.port, "feeds": len(config.feeds)})
    settings = config.fetcher
    engine = make_engine(database_url(config.database_url, config.state_dir, "fetcher"))
    store = FetcherStore(engine, settings.seen_per_feed, url_window=settings.url_dedup_window)
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-fetcher"),
        metrics.pipeline,
        config.kafka.send_timeout,
    )
    workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="fetcher-worker")
    table: FeedTable | None = None
    try:
        health.set_not_ready("creating Kafka topics")
        ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
        health.set_not_ready("loading runtime feed changes")
        table = FeedTable(
            make_consumer(bootstrap, config.kafka, None, "newswatch-fetcher-feeds"),
            config.feeds,
            settings.replica,
            settings.replicas,
            on_error=metrics.feed_definition_errors.inc,
            stored=store.definitions(),
        )
        table.load(stop)
        store.keep_definitions(table.take_changes())
        if settings.replica == 0:
            publish_definitions(publisher, table.missing_on_topic(), metrics)
            Every(
                "fetcher-feed-check",
                partial(repair, store, publisher, bootstrap, config.kafka, metrics, stop),
                settings.feeds_check,
                stop,
            ).start()
        health.set_not_ready("settling the publish journal")
        settle_journal(
            store,
            lambda: TableReader(
                make_consumer(bootstrap, config.kafka, None, "newswatch-fetcher-journal"), ITEMS
            ),
            table.mine(),
            metrics,
            stop,
        )
        if not stop.is_set():
            push_store = WebSubStore(engine)
            asyncio.run(
                _poll_feeds(
                    config, table, store, push_store, publisher, workers, metrics, health, server, stop
                )
            )
    finally:
        health.set_not_ready("stopping")
        workers.shutdown(wait=True)  # a poll cut short by the grace period still records its work
        if table is not None:
            table.close()
        publisher.close()
        store.close()
        server.stop()
        log.info("fetcher stopped")


async def _poll_feeds(
    config: Config,
    table: FeedTable,
    store: FetcherStore,
    push_store: WebSubStore,
    publisher: Publisher,
    workers: ThreadPoolExecutor,
    metrics: FetcherMetrics,
    health: Health,
    server: ObservabilityServer,
    stop: threading.Event,
) -> None:
    settings = config.fetcher
    loop = asyncio.get_running_loop()
    async with make_client(settings, NetGuard(config.allow_networks)) as client:
        poller = FeedPoller(client, store, publisher, metrics, settings, health, workers)
        policy = Policy(settings.min_interval, settings.max_interval, settings.unhealthy_after)
        scheduler = AsyncIOScheduler(timezone=UTC)
        push = None
        if settings.websub.public_url:
            push = Subscriber(
                push_store, client, settings.websub, settings.replica, metrics, settings.replicas
            )
        feeds = FeedScheduler(
            scheduler,
            poller,
            HostLimiter(settings.per_host),
            settings.concurrency,
            policy,
            metrics,
            push=push,
            push_poll_interval=settings.websub.poll_interval,
        )
        if push is not None:

            def deliver(url: str, body: bytes, headers: Mapping[str, str]) -> bool:
                pushed = asyncio.run_coroutine_threadsafe(feeds.push(url, body, dict(headers)), loop)
                return pushed.result(PUSH_TIMEOUT)

            await loop.run_in_executor(workers, push.load, deliver)
            server.mount("/websub/", push.route, settings.max_body_bytes)
        for feed in table.mine().values():
            feeds.start(feed, store.feed_state(feed.url).status, settings.start_spread)
        if push is not None:
            push.keep_only(feeds.feeds.keys())
        scheduler.start()
        health.set_ready()
        log.info(
            "polling feeds",
            extra={"feeds": len(feeds.feeds), "replica": settings.replica, "replicas": settings.replicas},
        )
        if not feeds.feeds:
            log.warning("no feeds to poll; add some under `feeds:` or with `newswatch feeds add URL`")
        try:
            while not await loop.run_in_executor(None, stop.wait, 1.0):
                health.beat()
                if push is not None:
                    push.tick()
                if await loop.run_in_executor(workers, _apply_changes, table, store):
                    _reconcile(feeds, table.mine(), store, settings.start_spread)
        finally:
            health.set_not_ready("stopping")
            scheduler.pause()  # no new polls; the ones in flight may finish
            deadline = loop.time() + drain_budget(config.stop_grace)
            unfinished = await feeds.drain(deadline - loop.time())
            if push is not None:  # requests to hubs in flight share what is left of the budget
                await push.close(max(0.0, deadline - loop.time()))
            if unfinished:
                log.warning(
                    "polls cut short at shutdown; they are retried at the next start",
                    extra={"polls": unfinished},
                )
            scheduler.shutdown(wait=False)


def _apply_changes(table: FeedTable, store: FetcherStore) -> bool:
    """Reads runtime changes from the topic and stores them; True if the feed list changed."""
    changed = table.poll()
    store.keep_definitions(table.take_changes())
    return changed


def _reconcile(
    feeds: FeedScheduler, wanted: dict[str, FeedConfig], store: FetcherStore, spread: float
) -> None:
    """Apply a runtime change of the feed list without restarting anything."""
    current = feeds.feeds
    for url in current.keys() - wanted.keys():
        feeds.stop(url)
        log.info("feed no longer polled (paused or removed)", extra={"feed": url})
    for url, feed in wanted.items():
        if current.get(url) != feed:
            feeds.start(feed, store.feed_state(url).status, spread)
            log.info("feed polled from now on", extra={"feed": url, "interval": feed.interval})
