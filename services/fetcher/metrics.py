"""Every metric of the fetcher, declared in one place."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from newswatch import __version__
from newswatch.shared.metrics import PipelineMetrics

#: The bounded set of poll outcomes (label values of newswatch_fetcher_polls_total).
OUTCOMES = (
    "ok",
    "not_modified",
    "unchanged",
    "http_error",
    "network_error",
    "blocked",
    "too_large",
    "parse_error",
    "publish_error",
    "store_error",
    "internal_error",
)

DUPLICATE_KINDS = ("same_feed", "seen", "same_url")

#: WebSub subscription states (label values of newswatch_fetcher_websub_subscriptions).
WEBSUB_STATES = ("pending", "verified", "silent", "denied", "failed", "expired", "unsubscribing")
#: What became of a request sent to a hub.
WEBSUB_REQUEST_OUTCOMES = ("accepted", "refused", "error")
#: What became of a content distribution (push) received on a callback.
WEBSUB_PUSH_OUTCOMES = ("processed", "bad_signature", "unsigned", "unknown", "too_large", "failed")


class FetcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pipeline = PipelineMetrics(registry, "fetcher", __version__)
        self.polls = Counter(
            "newswatch_fetcher_polls_total", "Feed polls by outcome.", ["outcome"], registry=registry
        )
        for outcome in OUTCOMES:
            self.polls.labels(outcome)
        self.fetch_duration = Histogram(
            "newswatch_fetcher_fetch_duration_seconds",
            "Time from request start to the whole body read, per poll.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.feed_definitions_republished = Counter(
            "newswatch_fetcher_feed_definitions_republished_total",
            "Stored runtime feed definitions published again because newswatch.feeds no longer held them.",
            registry=registry,
        )
        self.feed_definition_errors = Counter(
            "newswatch_fetcher_feed_definition_errors_total",
            "Undecodable records on newswatch.feeds, ignored (the record stays on the topic).",
            registry=registry,
        )
        self.bytes = Counter(
            "newswatch_fetcher_bytes_total", "Feed body bytes read (after decompression).", registry=registry
        )
        self.items_fetched = Counter(
            "newswatch_fetcher_items_fetched_total", "Entries found in fetched feeds.", registry=registry
        )
        self.items_published = Counter(
            "newswatch_fetcher_items_published_total",
            "New items acknowledged by Kafka on newswatch.items.",
            registry=registry,
        )
        self.items_updated = Counter(
            "newswatch_fetcher_items_updated_total",
            "Revisions (kind=update) of items whose title or summary changed materially, acknowledged by Kafka.",
            registry=registry,
        )
        self.items_duplicate = Counter(
            "newswatch_fetcher_items_duplicate_total",
            "Entries not published again, by kind: same_feed (repeated in one document), seen (already "
            "published, unchanged), same_url (canonical URL already published by another item).",
            ["kind"],
            registry=registry,
        )
        for kind in DUPLICATE_KINDS:
            self.items_duplicate.labels(kind)
        self.items_backfill_skipped = Counter(
            "newswatch_fetcher_items_backfill_skipped_total",
            "Entries not published on a feed's first poll: older than fetcher.backfill or over the cap.",
            registry=registry,
        )
        self.journal_items = Counter(
            "newswatch_fetcher_journal_items_total",
            "Items of publish batches left pending by an interrupted run, settled at start-up: "
            "published (found on newswatch.items, now remembered) or not_published (the next poll sends them).",
            ["result"],
            registry=registry,
        )
        for result in ("published", "not_published"):
            self.journal_items.labels(result)
        self.feeds = Gauge(
            "newswatch_fetcher_feeds",
            "Feeds by status: active, unhealthy (failing, polled at max_interval), gone (HTTP 410, not polled).",
            ["status"],
            registry=registry,
        )
        self.schedule_lag = Histogram(
            "newswatch_fetcher_schedule_lag_seconds",
            "How late polls start compared with their planned time (a saturated fetcher falls behind).",
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.websub_subscriptions = Gauge(
            "newswatch_fetcher_websub_subscriptions",
            "WebSub subscriptions by state: pending (awaiting the hub's verification), verified (push "
            "live), silent (a poll found items push did not bring), denied, failed, expired, unsubscribing.",
            ["state"],
            registry=registry,
        )
        for state in WEBSUB_STATES:
            self.websub_subscriptions.labels(state)
        self.websub_requests = Counter(
            "newswatch_fetcher_websub_requests_total",
            "Subscription requests sent to hubs, by mode (subscribe, unsubscribe) and outcome: accepted "
            "(202), refused (another status), error (no answer).",
            ["mode", "outcome"],
            registry=registry,
        )
        for mode in ("subscribe", "unsubscribe"):
            for outcome in WEBSUB_REQUEST_OUTCOMES:
                self.websub_requests.labels(mode, outcome)
        self.websub_verifications = Counter(
            "newswatch_fetcher_websub_verifications_total",
            "Hub callbacks verifying intent, by mode (subscribe, unsubscribe, denied) and outcome: "
            "confirmed (a request of ours was pending) or refused (404: none was).",
            ["mode", "outcome"],
            registry=registry,
        )
        for mode in ("subscribe", "unsubscribe", "denied"):
            for outcome in ("confirmed", "refused"):
                self.websub_verifications.labels(mode, outcome)
        self.websub_pushes = Counter(
            "newswatch_fetcher_websub_pushes_total",
            "Content pushed to callbacks, by outcome: processed (same path as a polled body), "
            "bad_signature and unsigned (ignored), unknown (no such callback: 410), too_large (413), "
            "failed (parse, publish or store error: 503, the hub retries).",
            ["outcome"],
            registry=registry,
        )
        for outcome in WEBSUB_PUSH_OUTCOMES:
            self.websub_pushes.labels(outcome)
