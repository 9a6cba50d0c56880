"""Every metric of the notifier, declared in one place. No per-subscription labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from newswatch import __version__
from newswatch.shared.metrics import PipelineMetrics

#: Bounded reasons for newswatch_notifier_alerts_failed_total.
FAILURE_REASONS = ("http_4xx", "http_5xx", "http_other", "network", "blocked")


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pipeline = PipelineMetrics(registry, "notifier", __version__)
        self.matches_received = Counter(
            "newswatch_notifier_matches_received_total",
            "Matches read from newswatch.matches.",
            registry=registry,
        )
        self.alerts_sent = Counter(
            "newswatch_notifier_alerts_sent_total",
            "Alerts delivered, by channel.",
            ["channel"],
            registry=registry,
        )
        self.alerts_failed = Counter(
            "newswatch_notifier_alerts_failed_total",
            "Alerts given up on and sent to the DLQ, by channel and reason.",
            ["channel", "reason"],
            registry=registry,
        )
        self.attempts_failed = Counter(
            "newswatch_notifier_delivery_attempts_failed_total",
            "Single delivery attempts that failed (retried or given up), by channel and reason.",
            ["channel", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "newswatch_notifier_duplicates_suppressed_total",
            "Alerts not sent because this subscription already got this item.",
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "newswatch_notifier_delivery_seconds",
            "Duration of one successful webhook request.",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.alerts_sent.labels("webhook")
        for reason in FAILURE_REASONS:
            self.alerts_failed.labels("webhook", reason)
