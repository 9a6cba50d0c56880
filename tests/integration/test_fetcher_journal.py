"""The publish journal against the real broker: a batch cut short by a kill is settled right.

Each test builds the state a killed fetcher leaves behind (a journal entry, some of its
records on newswatch.items, the seen-set not yet written) and runs the start-up settling.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from newswatch.fetcher.dedup import Decision, Remember
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.pending import PendingBatch
from newswatch.fetcher.recovery import settle_journal
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS, encode
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.table import TableReader
from tests.support.items import make_item

pytestmark = pytest.mark.integration
FEED = "https://news.example/feed.xml"


def remembered(item_id: str, revision: int = 1) -> Remember:
    return Remember(make_item(item_id).item_id, "hash", revision)


@pytest.fixture
def parts(
    tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> tuple[FetcherStore, Publisher, FetcherMetrics]:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(f"sqlite:///{tmp_path / 'fetcher.sqlite3'}"), keep_per_feed=100)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "test"), metrics.pipeline, send_timeout=5
    )
    return store, publisher, metrics


def settle_now(
    store: FetcherStore, metrics: FetcherMetrics, broker: EmbeddedBroker, settings: KafkaSettings
) -> int:
    def reader() -> TableReader:
        return TableReader(make_consumer(broker.bootstrap, settings, None, "test-journal"), ITEMS)

    return settle_journal(store, reader, [FEED], metrics, threading.Event())


def journal_count(metrics: FetcherMetrics, result: str) -> float:
    return float(metrics.journal_items.labels(result)._value.get())


def test_kill_after_ack_is_settled_from_kafka_without_republishing(
    parts: tuple[FetcherStore, Publisher, FetcherMetrics],
    broker: EmbeddedBroker,
    kafka_settings: KafkaSettings,
) -> None:
    store, publisher, metrics = parts
    # An earlier, complete poll: its acks set the floors later batches start from.
    done = Decision(publish=[make_item("earlier")], remember=[remembered("earlier")])
    batch0 = store.begin_pending(FEED, lambda f: PendingBatch.of("b0", FEED, f, done))
    acks = publisher.publish([Record(ITEMS, i.item_id, encode(i)) for i in done.publish])
    store.remember(FEED, done.remember, pending=batch0.batch_id, acked=acks)
    # The interrupted poll: `sent` and a revision of `earlier` reached Kafka, `unsent` did not.
    sent, unsent, revised = (
        make_item("sent"),
        make_item("unsent"),
        make_item("earlier", "New title", revision=2),
    )
    cut = Decision(
        publish=[sent, unsent, revised],
        remember=[remembered("sent"), remembered("unsent"), remembered("earlier", 2), remembered("old")],
        claims=[(sent.canonical_url, sent.item_id), (unsent.canonical_url, unsent.item_id)],
    )
    batch = store.begin_pending(FEED, lambda f: PendingBatch.of("b1", FEED, f, cut))
    assert batch.floors == {acks[0].partition: acks[0].offset + 1}
    publisher.publish([Record(ITEMS, i.item_id, encode(i)) for i in (sent, revised)])
    publisher.close()

    assert settle_now(store, metrics, broker, kafka_settings) == 1
    assert store.pending_batches() == []
    known = store.seen_state(FEED, [sent.item_id, unsent.item_id, "earlier_", "old_____"])
    assert set(known) == {sent.item_id, "earlier_", "old_____"}
    assert known["earlier_"].revision == 2
    assert store.url_owners([sent.canonical_url, unsent.canonical_url]) == {sent.canonical_url: sent.item_id}
    assert (journal_count(metrics, "published"), journal_count(metrics, "not_published")) == (2, 1)
    assert settle_now(store, metrics, broker, kafka_settings) == 0  # nothing left to settle


def test_floors_beyond_the_end_read_from_the_beginning(
    parts: tuple[FetcherStore, Publisher, FetcherMetrics],
    broker: EmbeddedBroker,
    kafka_settings: KafkaSettings,
) -> None:
    """A broker that lost its data restarts offsets at 0, below floors recorded before."""
    store, publisher, metrics = parts
    item = make_item("afterwipe")
    decision = Decision(publish=[item], remember=[remembered("afterwipe")])
    stale = dict.fromkeys(range(kafka_settings.partitions), 10_000)
    store.begin_pending(FEED, lambda _f: PendingBatch.of("b2", FEED, stale, decision))
    publisher.publish([Record(ITEMS, item.item_id, encode(item))])
    publisher.close()

    assert settle_now(store, metrics, broker, kafka_settings) == 1
    assert set(store.seen_state(FEED, [item.item_id])) == {item.item_id}
    assert journal_count(metrics, "published") == 1
