"""The stream layer's contract, run against both backends: the in-memory one (fast unit tests
use it) and the real broker. The same tests must pass on each, so the in-memory backend is
only ever a faster copy of what Kafka does to the loop, never a friendlier one.

What is held: in order per partition, nothing skipped, committed only after the effect;
poison dead-lettered alone; a record failing every time dead-lettered after the limit,
its neighbours processed once; an outage waited out without dead-lettering; a batch that
fails as a whole narrowed down to its bad record; batches bounded by count and bytes; a
topic the broker lost read again from the start; a publisher that outlives a broken producer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ALL_TOPICS, DLQ, ITEMS
from newswatch.shared.errors import KafkaUnavailableError, NewswatchError
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import (
    Consumer,
    ConsumerLoop,
    Envelope,
    LoopPolicy,
    Message,
    NotReached,
    Producer,
    Publisher,
    Record,
    TopicPartition,
)
from newswatch.shared.kafka_memory import MemoryBroker
from newswatch.shared.kafka_memory import producer_factory as memory_producer_factory
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.processes import free_port
from tests.conftest import TEST_KAFKA
from tests.support.kafka import read_records
from tests.support.waiting import wait_for


@dataclass
class Backend:
    name: str
    consumer: Callable[[str], Consumer]  # a member of this group
    producers: Callable[[], Callable[[], Producer]]  # a factory Publisher rebuilds with
    ensure: Callable[[Sequence[str], int], None]  # topics, partitions
    records: Callable[[str], list[tuple[bytes | None, bytes | None, dict[str, bytes]]]]
    lose_everything: Callable[[], None]  # the broker restarts empty


def _memory() -> Iterator[Backend]:
    broker = MemoryBroker()
    yield Backend(
        "memory",
        broker.consumer,
        lambda: memory_producer_factory(broker, ALL_TOPICS),
        broker.ensure_topics,
        lambda topic: [(m.key, m.value, dict(m.headers)) for m in broker.records(topic)],
        broker.wipe,
    )


def _kafka() -> Iterator[Backend]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    consumers: list[Consumer] = []

    def consumer(group: str) -> Consumer:
        made = make_consumer(broker.bootstrap, TEST_KAFKA, group, "contract")
        consumers.append(made)
        return made

    def restart() -> None:
        broker.stop()
        broker.start()

    try:
        yield Backend(
            "kafka",
            consumer,
            lambda: producer_factory(broker.bootstrap, TEST_KAFKA, "contract"),
            lambda topics, partitions: ensure_topics(
                broker.bootstrap, TEST_KAFKA.model_copy(update={"partitions": partitions}), topics
            ),
            lambda topic: [(r.key, r.value, dict(r.headers)) for r in read_records(broker.bootstrap, topic)],
            restart,
        )
    finally:
        for made in consumers:
            made.close()
        broker.stop()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from (_memory() if request.param == "memory" else _kafka())


class Recorder:
    """A processor that records what it did; ``fail`` says when a value fails."""

    def __init__(self, fail: Callable[[bytes, int], BaseException | None] | None = None) -> None:
        self.done: list[bytes] = []
        self.seen_batches: list[int] = []
        self.calls: dict[bytes, int] = {}
        self._fail = fail or (lambda _value, _n: None)

    def decode(self, message: Message) -> bytes:
        assert message.value is not None
        if message.value.startswith(b"poison"):
            raise ValueError(f"cannot decode {message.value!r}")
        return message.value

    def process(self, batch: Sequence[Envelope[bytes]]) -> Mapping[int, BaseException]:
        self.seen_batches.append(len(batch))
        failures: dict[int, BaseException] = {}
        stopped: set[TopicPartition] = set()
        for index, envelope in enumerate(batch):
            if envelope.message.tp in stopped:  # effects in partition order
                failures[index] = NotReached()
                continue
            value = envelope.payload
            self.calls[value] = self.calls.get(value, 0) + 1
            error = self._fail(value, self.calls[value])
            if error is not None:
                failures[index] = error
                stopped.add(envelope.message.tp)
            else:
                self.done.append(value)
        return failures


class Outage(NewswatchError):
    transient = True


class BatchRaiser(Recorder):
    """Raises for the whole batch when it holds ``bad`` (as one transaction would)."""

    def __init__(self, bad: bytes) -> None:
        super().__init__()
        self.bad = bad

    def process(self, batch: Sequence[Envelope[bytes]]) -> Mapping[int, BaseException]:
        if any(e.payload == self.bad for e in batch):
            self.seen_batches.append(len(batch))
            raise RuntimeError("constraint violated")
        return super().process(batch)


def _metrics() -> tuple[PipelineMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return PipelineMetrics(registry, "test", "0"), registry


def _publish(backend: Backend, values: Sequence[bytes], key: str = "k") -> None:
    publisher = Publisher(backend.producers(), _metrics()[0], send_timeout=5, backoff=0.1)
    try:
        publisher.publish([Record(ITEMS, key, value) for value in values])
    finally:
        publisher.close()


def _loop(
    backend: Backend, processor: Recorder, group: str, **policy: int | float
) -> tuple[ConsumerLoop[bytes], Consumer, CollectorRegistry]:
    metrics, registry = _metrics()
    sink = Publisher(backend.producers(), metrics, send_timeout=5, backoff=0.1)
    consumer = backend.consumer(group)
    consumer.subscribe([ITEMS])
    settings = {"retry_backoff": 0.01, "retry_backoff_max": 0.05, "poll_timeout_ms": 200, **policy}
    loop = ConsumerLoop(consumer, processor, sink, metrics, "test", LoopPolicy(**settings))  # type: ignore[arg-type]
    return loop, consumer, registry


def _run_until(loop: ConsumerLoop[bytes], done: Callable[[], bool], what: str, timeout: float = 40) -> None:
    def step() -> bool:
        loop.run_once()
        return done()

    wait_for(step, timeout, interval=0.001, what=what)


def _group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def test_records_are_processed_in_order_and_only_done_work_is_committed(backend: Backend) -> None:
    backend.ensure([ITEMS, DLQ], 1)
    values = [str(i).encode() for i in range(6)]
    _publish(backend, values)
    processor = Recorder(lambda v, n: RuntimeError("flaky") if v == b"3" and n <= 2 else None)
    group = _group()
    loop, consumer, registry = _loop(backend, processor, group)
    _run_until(loop, lambda: len(processor.done) == 6, "every record")
    assert processor.done == values  # in order, none skipped, none twice
    assert registry.get_sample_value("newswatch_kafka_processing_retries_total", {"topic": ITEMS}) == 2
    assert registry.get_sample_value("newswatch_kafka_consumed_total", {"topic": ITEMS}) == 6
    consumer.close()
    # A new member of the group starts after the committed work: nothing is redone.
    again = Recorder()
    loop, consumer, _ = _loop(backend, again, group)
    for _ in range(25):
        loop.run_once()
    assert again.done == []
    consumer.close()


def test_a_poison_record_goes_to_the_dlq_alone_and_its_neighbours_are_processed_once(
    backend: Backend,
) -> None:
    backend.ensure([ITEMS, DLQ], 1)
    values = [b"a", b"b", b"poison-c", b"d", b"e"]
    _publish(backend, values)
    processor = Recorder()
    loop, consumer, registry = _loop(backend, processor, _group())
    _run_until(loop, lambda: len(processor.done) == 4, "the neighbours")
    for _ in range(5):
        loop.run_once()
    assert processor.done == [b"a", b"b", b"d", b"e"]
    assert processor.calls == {b"a": 1, b"b": 1, b"d": 1, b"e": 1}
    (dead,) = backend.records(DLQ)
    assert dead[1] == b"poison-c"
    assert dead[2]["error_type"] == b"ValueError" and dead[2]["source_topic"] == ITEMS.encode()
    assert registry.get_sample_value("newswatch_dlq_total", {"source_topic": ITEMS, "reason": "decode"}) == 1
    consumer.close()


def test_a_record_failing_every_time_is_dead_lettered_after_the_limit(backend: Backend) -> None:
    backend.ensure([ITEMS, DLQ], 1)
    _publish(backend, [b"a", b"bad", b"c", b"d"])
    processor = Recorder(lambda v, _n: RuntimeError("always") if v == b"bad" else None)
    loop, consumer, registry = _loop(backend, processor, _group(), record_attempts=3)
    _run_until(loop, lambda: len(processor.done) == 3, "the neighbours")
    for _ in range(5):
        loop.run_once()
    assert processor.done == [b"a", b"c", b"d"]
    assert processor.calls[b"bad"] == 3
    assert processor.calls[b"c"] == 1 and processor.calls[b"d"] == 1  # not reached until done once
    (dead,) = backend.records(DLQ)
    assert dead[1] == b"bad" and b"always" in dead[2]["error"]
    labels = {"source_topic": ITEMS, "reason": "processing"}
    assert registry.get_sample_value("newswatch_dlq_total", labels) == 1
    consumer.close()


def test_an_outage_is_waited_out_and_nothing_is_dead_lettered(backend: Backend) -> None:
    backend.ensure([ITEMS, DLQ], 1)
    _publish(backend, [b"a", b"b"])
    processor = Recorder(lambda v, n: Outage("database away") if n <= 6 else None)
    loop, consumer, _ = _loop(backend, processor, _group(), record_attempts=2)
    _run_until(loop, lambda: len(processor.done) == 2, "the end of the outage")
    assert processor.done == [b"a", b"b"]
    assert backend.records(DLQ) == []
    consumer.close()


def test_a_batch_failing_as_a_whole_is_narrowed_down_to_its_bad_record(backend: Backend) -> None:
    backend.ensure([ITEMS, DLQ], 1)
    _publish(backend, [b"a", b"b", b"bad", b"c"])
    processor = BatchRaiser(b"bad")
    loop, consumer, _ = _loop(backend, processor, _group(), record_attempts=2)
    _run_until(loop, lambda: len(processor.done) == 3, "the neighbours")
    assert processor.done == [b"a", b"b", b"c"]
    assert processor.calls == {b"a": 1, b"b": 1, b"c": 1}
    assert [r[1] for r in backend.records(DLQ)] == [b"bad"]
    consumer.close()


def test_batches_are_bounded_by_count_and_by_bytes(backend: Backend) -> None:
    backend.ensure([ITEMS, DLQ], 1)
    _publish(backend, [f"{i:03d}".encode() * 10 for i in range(20)])  # 30 bytes each, key 1 byte
    counted = Recorder()
    loop, consumer, _ = _loop(backend, counted, _group(), max_records=4)
    _run_until(loop, lambda: len(counted.done) == 20, "every record")
    assert max(counted.seen_batches) <= 4
    consumer.close()
    sized = Recorder()
    loop, consumer, _ = _loop(backend, sized, _group(), max_bytes=100)
    _run_until(loop, lambda: len(sized.done) == 20, "every record")
    assert max(sized.seen_batches) <= 3 and sized.done == counted.done
    consumer.close()


def test_a_topic_the_broker_lost_is_read_again_from_the_start(backend: Backend) -> None:
    backend.ensure(ALL_TOPICS, 3)
    _publish(backend, [f"before{i}".encode() for i in range(12)], key="")
    processor = Recorder()
    loop, consumer, _ = _loop(backend, processor, _group())
    _run_until(loop, lambda: len(processor.done) >= 12, "the records before the loss")
    backend.lose_everything()
    backend.ensure(ALL_TOPICS, 3)
    after = [f"after{i}".encode() for i in range(30)]
    _publish(backend, after, key="")

    def every_one() -> bool:
        with contextlib.suppress(KafkaUnavailableError):
            loop.run_once()
        return set(after) <= set(processor.done)

    wait_for(every_one, 60, interval=0.001, what="every record published after the loss")
    consumer.close()


def test_the_publisher_waits_for_every_ack_and_outlives_a_broken_producer(backend: Backend) -> None:
    backend.ensure(ALL_TOPICS, 3)
    metrics, registry = _metrics()
    publisher = Publisher(backend.producers(), metrics, send_timeout=5, backoff=0.2)
    acks = publisher.publish([Record(ITEMS, f"k{i}", b"v") for i in range(5)])
    assert len(acks) == 5 and all(a.topic == ITEMS for a in acks)
    backend.lose_everything()  # an idempotent producer stays broken after this
    backend.ensure(ALL_TOPICS, 3)
    publisher.publish([Record(ITEMS, "after", b"restart")])
    assert [r[1] for r in backend.records(ITEMS)] == [b"restart"]
    assert (registry.get_sample_value("newswatch_kafka_producer_rebuilds_total") or 0) >= 1
    publisher.close()
