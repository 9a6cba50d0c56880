"""Keeps ``newswatch.topics`` in step with the notifier's database, the topics' source of truth.

At start-up every stored topic is published. After that, every ``notifier.topics_check`` the
notifier reads ``newswatch.topics`` back (it is small: one record per change, compacted on
Kafka) and publishes again each stored topic the broker no longer holds — after a broker
lost its data, say — so the matchers get their topics back without anyone restarting the
notifier.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from newswatch.notifier.catalog import Catalog
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import TOPICS, TopicDefinition, encode
from newswatch.shared.kafka_client import make_consumer
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.table import live_keys

log = logging.getLogger(__name__)


def publish_topics(store: Catalog, publisher: Publisher, only: set[str] | None = None) -> int:
    """Stored topics (all, or those in ``only``) to ``newswatch.topics``; returns how many."""
    now = datetime.now(UTC)
    records = [
        Record(TOPICS, topic_id, encode(TopicDefinition(id=topic_id, query=query, updated_at=now)))
        for topic_id, query, _owner in store.topics()
        if only is None or topic_id in only
    ]
    if records:
        publisher.publish(records)
    return len(records)


def topics_on_broker(bootstrap: str, settings: KafkaSettings, stop: threading.Event) -> set[str]:
    """Ids whose latest record on ``newswatch.topics`` is a definition (not a tombstone)."""
    return live_keys(make_consumer(bootstrap, settings, None, "newswatch-topic-check"), TOPICS, stop)


def repair(
    store: Catalog,
    publisher: Publisher,
    bootstrap: str,
    settings: KafkaSettings,
    metrics: NotifierMetrics,
    stop: threading.Event,
) -> int:
    """Publishes the stored topics missing from the broker; returns how many."""
    missing = {topic_id for topic_id, _q, _o in store.topics()} - topics_on_broker(bootstrap, settings, stop)
    if not missing:
        return 0
    count = publish_topics(store, publisher, missing)
    metrics.topics_republished.inc(count)
    log.warning("topics missing on the broker published again", extra={"topics": sorted(missing)})
    return count
