"""Keeps ``newswatch.feeds`` in step with the fetcher's database, the feed list's source of truth.

Runtime changes (``newswatch feeds add|pause|resume|remove|import``) arrive on the topic and
are stored by every fetcher (``feed_table``). Replica 0 publishes again the stored
definitions the topic lacks: at start-up (the embedded broker keeps nothing across a restart)
and every ``fetcher.feeds_check`` (a broker that lost its data while the fetcher ran), so a
feed added at run time is never lost with the broker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import FEEDS, FeedDefinition, encode
from newswatch.shared.kafka_client import make_consumer
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.table import live_keys

log = logging.getLogger(__name__)


def publish_definitions(
    publisher: Publisher, definitions: Sequence[FeedDefinition], metrics: FetcherMetrics
) -> int:
    """Publishes ``definitions`` unchanged (their own ``updated_at``); returns how many."""
    if definitions:
        publisher.publish([Record(FEEDS, d.url, encode(d)) for d in definitions])
        metrics.feed_definitions_republished.inc(len(definitions))
        log.warning(
            "stored feed definitions missing on the broker published again",
            extra={"feeds": [d.url for d in definitions][:20], "count": len(definitions)},
        )
    return len(definitions)


def repair(
    store: FetcherStore,
    publisher: Publisher,
    bootstrap: str,
    settings: KafkaSettings,
    metrics: FetcherMetrics,
    stop: threading.Event,
) -> int:
    """Publishes the stored definitions whose URL has no live record on the topic."""
    on_topic = live_keys(make_consumer(bootstrap, settings, None, "newswatch-feed-check"), FEEDS, stop)
    missing = [d for d in store.definitions() if d.url not in on_topic]
    return publish_definitions(publisher, missing, metrics)
