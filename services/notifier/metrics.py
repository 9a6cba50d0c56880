"""Every metric of the notifier, declared in one place. No per-subscription labels: label
values come from the bounded sets below (channels, outcomes, failure reasons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from newswatch import __version__
from newswatch.notifier.destinations import STATES
from newswatch.notifier.model import CHANNELS, OUTCOMES
from newswatch.shared.metrics import PipelineMetrics

#: Bounded failure reasons of a delivery attempt.
FAILURE_REASONS = (
    "http_4xx",
    "http_5xx",
    "http_other",
    "network",
    "blocked",
    "smtp_4xx",
    "smtp_5xx",
    "apprise",
    "bad_url",
    "expired",
    "unsubscribed",
    "render",
)
KINDS = ("alert", "digest")
#: What people do in the web app and through its links (``newswatch_notifier_web_events_total``).
WEB_EVENTS = (
    "signin_token",
    "signin_link",
    "signin_refused",
    "signin_link_mailed",
    "signout",
    "csrf_refused",
    "confirmation_mailed",
    "confirmation_not_sent",
    "confirmed",
    "link_expired",
    "unsubscribed",
    "feed_served",
    "feed_not_modified",
    "feed_unknown",
    "test_sent",
    "test_failed",
)


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pipeline = PipelineMetrics(registry, "notifier", __version__)
        self.matches_received = Counter(
            "newswatch_notifier_matches_received_total",
            "Matches read from newswatch.matches.",
            registry=registry,
        )
        self.routed = Counter(
            "newswatch_notifier_routed_total",
            "Matches routed to a subscription, by outcome (queued, digest, held, overflow, duplicate, "
            "repeat, update, update_suppressed).",
            ["outcome"],
            registry=registry,
        )
        self.duplicates = Counter(
            "newswatch_notifier_duplicates_suppressed_total",
            "Alerts not sent because the subscription already got the item or a near-duplicate story.",
            registry=registry,
        )
        self.deliveries = Counter(
            "newswatch_notifier_deliveries_total",
            "Finished deliveries (alerts and digests), by channel, kind and outcome (delivered, dead).",
            ["channel", "kind", "outcome"],
            registry=registry,
        )
        self.attempts_failed = Counter(
            "newswatch_notifier_delivery_attempts_failed_total",
            "Single delivery attempts that failed, by channel, class (transient, permanent) and reason.",
            ["channel", "class", "reason"],
            registry=registry,
        )
        self.alerts_sent = Counter(
            "newswatch_notifier_alerts_sent_total",
            "Alerts delivered (an alert in a digest counts once), by channel.",
            ["channel"],
            registry=registry,
        )
        self.outbox = Gauge(
            "newswatch_notifier_retry_queue_depth",
            "Deliveries waiting to be sent or retried (the outbox).",
            registry=registry,
        )
        self.destination_state = Gauge(
            "newswatch_notifier_destination_state",
            "Destinations (webhook hosts, the SMTP server, Apprise services) this replica sent to "
            "lately, by circuit state: closed (sending), open (its deliveries wait for a probe), "
            "half_open (a probe in flight).",
            ["state"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "newswatch_notifier_deliveries_in_flight",
            "Deliveries this replica holds: being sent, or taken and waiting for a free sender.",
            registry=registry,
        )
        self.digest_queue = Gauge(
            "newswatch_notifier_digest_queue_size",
            "Matches waiting for a digest (digest mode, overflow, quiet hours, snooze).",
            registry=registry,
        )
        self.latency = Histogram(
            "newswatch_notifier_delivery_latency_seconds",
            "From the item's fetch (its publication on newswatch.items) to delivery of its alert.",
            ["channel"],
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=registry,
        )
        self.send_seconds = Histogram(
            "newswatch_notifier_send_seconds",
            "Duration of one successful send (webhook request, SMTP session, Apprise call).",
            ["channel"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.alert_publish_errors = Counter(
            "newswatch_notifier_alert_publish_errors_total",
            "Delivered alerts that could not be published to newswatch.alerts.",
            registry=registry,
        )
        self.topics_republished = Counter(
            "newswatch_notifier_topics_republished_total",
            "Stored topics published again because newswatch.topics no longer held them (a broker that lost its data).",
            registry=registry,
        )
        self.web_events = Counter(
            "newswatch_notifier_web_events_total",
            "Web app and link events: sign-ins, refused forms, confirmations, unsubscribes, feed reads, test alerts.",
            ["event"],
            registry=registry,
        )
        self.pruned = Counter(
            "newswatch_notifier_pruned_rows_total",
            "Rows forgotten: stories past the dedup horizon, finished deliveries past the log retention.",
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.routed.labels(outcome)
        for event in WEB_EVENTS:
            self.web_events.labels(event)
        for state in STATES:
            self.destination_state.labels(state)
        for channel in CHANNELS:
            self.alerts_sent.labels(channel)
            for kind in KINDS:
                for outcome in ("delivered", "dead"):
                    self.deliveries.labels(channel, kind, outcome)
