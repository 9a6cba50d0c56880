"""Every metric of the matcher, declared in one place. No per-topic labels (unbounded)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from newswatch import __version__
from newswatch.shared.metrics import PipelineMetrics

TOPIC_ERROR_REASONS = ("decode", "compile")


class MatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pipeline = PipelineMetrics(registry, "matcher", __version__)
        self.items_evaluated = Counter(
            "newswatch_matcher_items_evaluated_total",
            "Items tested against the topic set.",
            registry=registry,
        )
        self.items_matched = Counter(
            "newswatch_matcher_items_matched_total",
            "Items that matched at least one topic.",
            registry=registry,
        )
        self.matches = Counter(
            "newswatch_matcher_matches_published_total",
            "(topic, item) matches acknowledged by Kafka on newswatch.matches.",
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "newswatch_matcher_evaluation_seconds",
            "Time to evaluate one item against all topics.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
            registry=registry,
        )
        self.topics_loaded = Gauge(
            "newswatch_matcher_topics", "Topics in the live topic set.", registry=registry
        )
        self.topic_errors = Counter(
            "newswatch_matcher_topic_errors_total",
            "Topic definitions rejected (the previous version stays), by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in TOPIC_ERROR_REASONS:
            self.topic_errors.labels(reason)
