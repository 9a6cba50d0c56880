"""``newswatch apply``: publish a config file's topics to ``newswatch.topics``.

The matcher builds its topic set from that Kafka topic, so applied topics take effect
without restarting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from newswatch.matcher.errors import AliasError, QueryError
from newswatch.matcher.topics import Compiler
from newswatch.shared.config import Config
from newswatch.shared.contract import TOPICS, TopicDefinition, encode
from newswatch.shared.errors import ConfigError
from newswatch.shared.kafka_client import publish_once
from newswatch.shared.kafka_io import Record

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
    """Check every query, then publish every topic and wait for the acknowledgements.

    Queries are checked with the aliases of ``config`` (the matcher's): an alias can make a
    query valid, e.g. ``(North Korea) NEAR/5 troops``.
    """
    try:
        compiler = Compiler.from_settings(config.matcher)
    except AliasError as exc:
        raise ConfigError(f"matcher aliases: {exc}") from exc
    for index, topic in enumerate(topics.topics):
        try:
            compiler.compile(topic.id, topic.query)
        except QueryError as exc:
            raise ConfigError(f"topics[{index}] ({topic.id}): query: {exc}") from exc
    now = datetime.now(UTC)
    records = [
        Record(TOPICS, t.id, encode(TopicDefinition(id=t.id, query=t.query, updated_at=now)))
        for t in topics.topics
    ]
    publish_once(bootstrap, config.kafka, records, "newswatch-apply")
    return [t.id for t in topics.topics]
