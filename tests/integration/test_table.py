"""Reading a Kafka topic as a table (no consumer group) across a broker that lost its data."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, TOPICS
from newswatch.shared.errors import KafkaUnavailableError
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.table import TableReader


@contextlib.contextmanager
def table_rig(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> Iterator[tuple[Publisher, TableReader, list[str]]]:
    """A publisher, a table reader on newswatch.topics and the keys it has read, in order."""
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    metrics = PipelineMetrics(CollectorRegistry(), "test", "test")
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "t"), metrics, send_timeout=5, backoff=0.2
    )
    reader = TableReader(make_consumer(broker.bootstrap, kafka_settings, None, "table-test"), TOPICS)
    try:
        yield publisher, reader, []
    finally:
        reader.close()
        publisher.close()


def read_across_restart(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, before: int, after: int
) -> list[str]:
    """Reads ``before`` records, restarts the broker empty, publishes ``after`` records before
    the reader polls again, then reads until all are seen (bounded); returns what was read."""
    with table_rig(broker, kafka_settings) as (publisher, reader, seen):

        def collect(records: list[Any]) -> None:
            seen.extend(r.key.decode() for r in records)

        stop = threading.Event()
        publisher.publish([Record(TOPICS, f"before{n}", b"{}") for n in range(before)])
        reader.assign(stop)
        reader.catch_up(stop, collect)
        assert len(seen) == before
        broker.stop()  # the embedded broker keeps nothing: offsets start again at 0
        broker.start()
        ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
        publisher.publish([Record(TOPICS, f"after{n}", b"{}") for n in range(after)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(set(seen)) < before + after:
            try:
                reader.poll(collect, timeout_ms=200)
            except KafkaUnavailableError:  # the consumer reconnecting to the restarted broker
                time.sleep(0.2)
        return seen


def test_a_running_reader_rereads_from_the_start_after_the_broker_lost_its_data(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    seen = read_across_restart(broker, kafka_settings, before=12, after=3)
    assert sorted(seen[12:]) == ["after0", "after1", "after2"]


def test_a_reader_does_not_skip_a_new_log_that_grew_past_its_old_position(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    """40 records land before the reader polls again, so every partition's new log reaches
    past the reader's old position: it must still read all 40 (the topic id changed), not
    only the records past that position."""
    seen = read_across_restart(broker, kafka_settings, before=4, after=40)
    assert sorted(set(seen[4:])) == sorted(f"after{n}" for n in range(40))
