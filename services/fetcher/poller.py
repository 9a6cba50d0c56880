"""One poll of one feed: fetch → parse → normalize → decide (dedup, revisions, backfill) → publish → remember.

This is the unit APScheduler runs per feed. Its steps are ordered so that a crash at any
point loses nothing: items are marked seen only after Kafka acknowledged them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from newswatch.fetcher.dedup import decide
from newswatch.fetcher.errors import FetchError
from newswatch.fetcher.http_fetch import fetch
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.normalize import FeedContext, normalize_entry
from newswatch.fetcher.parse import parse_feed
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.config import FetcherSettings
from newswatch.shared.contract import ITEMS, Item, encode
from newswatch.shared.errors import PublishError
from newswatch.shared.health import Health
from newswatch.shared.kafka_io import Publisher, Record

log = logging.getLogger(__name__)


class FeedPoller:
    def __init__(
        self,
        client: httpx.Client,
        store: FetcherStore,
        publisher: Publisher,
        metrics: FetcherMetrics,
        settings: FetcherSettings,
        health: Health,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._store = store
        self._publisher = publisher
        self._metrics = metrics
        self._settings = settings
        self._health = health
        self._now = now

    def poll(self, url: str) -> str:
        """Poll ``url`` once; returns the outcome label (also counted). Never raises."""
        started = time.monotonic()
        try:
            outcome = self._poll(url)
        except FetchError as exc:
            outcome = exc.outcome
            log.warning("poll failed", extra={"feed": url, "outcome": outcome, "error": str(exc)})
        except PublishError as exc:
            outcome = "publish_error"
            self._health.set_not_ready(f"kafka: {exc}")
            log.error(
                "publishing items failed; will retry on the next poll", extra={"feed": url, "error": str(exc)}
            )
        self._metrics.polls.labels(outcome).inc()
        log.debug(
            "polled", extra={"feed": url, "outcome": outcome, "seconds": round(time.monotonic() - started, 3)}
        )
        return outcome

    def _poll(self, url: str) -> str:
        validators = self._store.validators(url)
        with self._metrics.fetch_duration.time():
            result = fetch(self._client, url, validators, self._settings)
        if result.not_modified:
            return "not_modified"
        self._metrics.bytes.inc(len(result.body))
        parsed = parse_feed(
            result.body, result.content_type, result.url, self._settings.max_body_bytes, result.headers
        )
        fetched_at = self._now()
        items: dict[str, Item] = {}
        context = FeedContext(url=url, title=parsed.title, site=parsed.link, language=parsed.language)
        for entry in parsed.entries:
            item = normalize_entry(entry, context, fetched_at)
            items.setdefault(item.item_id, item)
        self._metrics.items_fetched.inc(len(parsed.entries))
        self._metrics.items_duplicate.labels("same_feed").inc(len(parsed.entries) - len(items))
        decision = decide(
            list(items.values()),
            self._store.seen_state(url, items),
            self._store.url_owners(i.canonical_url for i in items.values()),
            self._store.is_first_poll(url),
            fetched_at,
            timedelta(seconds=self._settings.backfill),
            self._settings.backfill_max_items,
        )
        if decision.publish:
            self._publisher.publish([Record(ITEMS, item.item_id, encode(item)) for item in decision.publish])
            self._health.set_ready()
            log.info(
                "published items",
                extra={"feed": url, "new": decision.counts["new"], "updated": decision.counts["updated"]},
            )
        if decision.remember:
            self._store.remember(url, decision.remember, decision.claims, decision.also_in)
        self._metrics.items_published.inc(decision.counts["new"])
        self._metrics.items_updated.inc(decision.counts["updated"])
        self._metrics.items_duplicate.labels("seen").inc(decision.counts["seen"])
        self._metrics.items_duplicate.labels("same_url").inc(decision.counts["same_url"])
        self._metrics.items_backfill_skipped.inc(decision.counts["backfill"])
        self._store.save_validators(url, result.validators)
        return "ok"
