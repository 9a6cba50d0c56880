"""``newswatch apply``: publish a config file's topics to ``newswatch.topics``.

The matcher builds its topic set from that Kafka topic, so applied topics take effect
without restarting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from newswatch import __version__
from newswatch.matcher.errors import QueryError
from newswatch.matcher.query import compile_query
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS, TOPICS, TopicDefinition, encode
from newswatch.shared.errors import ConfigError
from newswatch.shared.kafka_io import Publisher, Record, ensure_topics, producer_factory
from newswatch.shared.metrics import PipelineMetrics

BOOTSTRAP_FILE = "bootstrap"


def bootstrap_file(state_dir: Path) -> Path:
    """Where ``up`` writes the address of the broker it runs, for ``apply`` to find."""
    return state_dir / BOOTSTRAP_FILE


def resolve_bootstrap(explicit: str | None, config: Config) -> str:
    if explicit:
        return explicit
    if config.kafka.bootstrap:
        return config.kafka.bootstrap
    path = bootstrap_file(config.state_dir)
    if path.is_file():
        return path.read_text().strip()
    raise ConfigError(
        "no broker address: pass --bootstrap, set NEWSWATCH_KAFKA_BOOTSTRAP or kafka.bootstrap, "
        f"or run `newswatch up` (it writes {path})"
    )


def apply_topics(bootstrap: str, config: Config, topics: Config) -> list[str]:
    """Check every query, then publish every topic and wait for the acknowledgements."""
    for index, topic in enumerate(topics.topics):
        try:
            compile_query(topic.query)
        except QueryError as exc:
            raise ConfigError(f"topics[{index}] ({topic.id}): query: {exc}") from exc
    ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
    metrics = PipelineMetrics(CollectorRegistry(), "apply", __version__)
    publisher = Publisher(
        producer_factory(bootstrap, config.kafka, "newswatch-apply"), metrics, config.kafka.send_timeout
    )
    now = datetime.now(UTC)
    try:
        publisher.publish(
            [
                Record(TOPICS, t.id, encode(TopicDefinition(id=t.id, query=t.query, updated_at=now)))
                for t in topics.topics
            ]
        )
    finally:
        publisher.close()
    return [t.id for t in topics.topics]
