"""Metrics every service shares (Kafka I/O, DLQ, consumer lag), declared once here.

Each service's own metrics live in its ``metrics`` module and embed this set, so all
metric declarations stay in one module per package with bounded labels only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector


def service_registry() -> CollectorRegistry:
    """A service's registry: its own metrics, plus the process (CPU, memory, open files) and
    Python (GC, version) collectors a default registry would have had."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class PipelineMetrics:
    """Kafka-facing metrics; labels are Kafka topic names (a fixed set of five)."""

    def __init__(self, registry: CollectorRegistry, service: str, version: str) -> None:
        self.build = Info("newswatch_build", "Service name and version of this process.", registry=registry)
        self.build.info({"service": service, "version": version})
        self.published = Counter(
            "newswatch_kafka_published_total",
            "Records acknowledged by the broker, by Kafka topic.",
            ["topic"],
            registry=registry,
        )
        self.publish_errors = Counter(
            "newswatch_kafka_publish_errors_total",
            "Send attempts that the broker did not acknowledge (retried or raised), by Kafka topic.",
            ["topic"],
            registry=registry,
        )
        self.producer_rebuilds = Counter(
            "newswatch_kafka_producer_rebuilds_total",
            "Times the Kafka producer was closed and rebuilt after a failed send.",
            registry=registry,
        )
        self.consumed = Counter(
            "newswatch_kafka_consumed_total",
            "Records whose processing finished (their offset may be committed), by Kafka topic.",
            ["topic"],
            registry=registry,
        )
        self.processing_retries = Counter(
            "newswatch_kafka_processing_retries_total",
            "Records handed back for a retry after a transient failure, by Kafka topic.",
            ["topic"],
            registry=registry,
        )
        self.commit_errors = Counter(
            "newswatch_kafka_commit_errors_total",
            "Offset commits that failed (the records will be processed again).",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "newswatch_consumer_lag",
            "Records not yet consumed: consumer highwater minus position, summed over assigned partitions.",
            ["topic"],
            registry=registry,
        )
        self.dlq = Counter(
            "newswatch_dlq_total",
            "Records sent to newswatch.dlq, by the Kafka topic they came from and reason class.",
            ["source_topic", "reason"],
            registry=registry,
        )
