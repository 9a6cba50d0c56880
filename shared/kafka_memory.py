"""An in-memory Kafka backend for fast unit tests: ``kafka_io``'s Protocols without a broker.

It keeps topics of partitions of logs, consumer groups with their committed offsets and a
range assignment redone on every join and leave, and producers whose sends are stored at
once. Faults are switched on by tests: ``down`` (polls and sends fail), ``fail_sends`` (the
next n sends are not acknowledged) and ``wipe()`` (the broker loses every topic and offset,
as a restarted embedded broker does: topics come back with new ids and offsets from 0).
It behaves as the embedded broker does where Kafka and it differ (a position past the end
of a recreated log stays there), so the loop's loss guard is exercised here too. The
contract suite (``tests/contract``) runs the same tests against this and the real broker.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from newswatch.shared.errors import KafkaCommitError, KafkaSendError, KafkaUnavailableError
from newswatch.shared.kafka_io import Ack, Headers, Message, TopicPartition


@dataclass
class _Topic:
    id: str
    logs: list[list[Message]]


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class MemoryBroker:
    """Topics, logs and groups in memory. Thread-safe."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.down = False
        self.fail_sends = 0
        self.epoch = 0  # bumped by wipe(): producers of an earlier epoch fail for good
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Condition()
        self._round_robin = 0

    # -- administration -------------------------------------------------------------------

    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        with self._lock:
            for name in topics:
                if name not in self._topics:
                    count = partitions or self.partitions
                    self._topics[name] = _Topic(uuid.uuid4().hex, [[] for _ in range(count)])
            for group in self._groups.values():
                self._rebalance(group)

    def wipe(self) -> None:
        """Lose everything, as a broker restarted empty does."""
        with self._lock:
            self.epoch += 1
            self._topics.clear()
            for group in self._groups.values():
                group.offsets.clear()

    def records(self, topic: str) -> list[Message]:
        """Every record of ``topic``, partition by partition."""
        with self._lock:
            found = self._topics.get(topic)
            return [m for log in found.logs for m in log] if found else []

    def committed(self, group: str) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._groups[group].offsets) if group in self._groups else {}

    def consumer(self, group_id: str | None = None) -> MemoryConsumer:
        return MemoryConsumer(self, group_id)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    # -- used by the clients ----------------------------------------------------------------

    def _append(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers, epoch: int
    ) -> Ack:
        with self._lock:
            if epoch != self.epoch:  # as an idempotent producer after its broker lost its state
                raise KafkaSendError("producer fenced: the broker lost its state since it was built")
            if self.down:
                raise KafkaSendError("the in-memory broker is down")
            if self.fail_sends > 0:
                self.fail_sends -= 1
                raise KafkaSendError("send refused (injected failure)")
            found = self._topics.get(topic)
            if found is None:
                raise KafkaSendError(f"unknown topic {topic!r} (topics are not auto-created)")
            if key is None:
                self._round_robin += 1
                partition = self._round_robin % len(found.logs)
            else:
                partition = zlib.crc32(key) % len(found.logs)
            log = found.logs[partition]
            message = Message(topic, partition, len(log), key, value, tuple(headers), int(time.time() * 1000))
            log.append(message)
            self._lock.notify_all()
            return Ack(topic, partition, message.offset)

    def _join(self, group_id: str, member: MemoryConsumer) -> None:
        with self._lock:
            group = self._groups.setdefault(group_id, _Group())
            if member not in group.members:
                group.members.append(member)
            self._rebalance(group)

    def _leave(self, group_id: str, member: MemoryConsumer) -> None:
        with self._lock:
            group = self._groups.get(group_id)
            if group is not None and member in group.members:
                group.members.remove(member)
                self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Range assignment of every subscribed partition over the members, in join order."""
        group.generation += 1
        topics = sorted({t for m in group.members for t in m.subscribed})
        partitions = [
            TopicPartition(t, p)
            for t in topics
            if t in self._topics
            for p in range(len(self._topics[t].logs))
        ]
        for index, member in enumerate(group.members):
            member._assigned_by_group(
                {tp for n, tp in enumerate(partitions) if n % len(group.members) == index}, group.generation
            )


class MemoryConsumer:
    """``Consumer`` on a MemoryBroker: a group member (``subscribe``) or a reader (``assign``)."""

    def __init__(self, broker: MemoryBroker, group_id: str | None) -> None:
        self._broker = broker
        self._group_id = group_id
        self.subscribed: list[str] = []
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._highwater: dict[TopicPartition, int] = {}
        self._closed = False

    def _assigned_by_group(self, partitions: set[TopicPartition], generation: int) -> None:
        """Called by the broker (under its lock) when the group's assignment changes."""
        group = self._broker._groups[self._group_id or ""]
        for tp in partitions - self._assigned:
            self._positions[tp] = group.offsets.get(tp, 0)
        for tp in self._assigned - partitions:
            self._positions.pop(tp, None)
            self._highwater.pop(tp, None)
        self._assigned = set(partitions)

    def subscribe(self, topics: Sequence[str]) -> None:
        if self._group_id is None:
            raise ValueError("subscribe needs a group")
        self.subscribed = list(topics)
        self._broker._join(self._group_id, self)

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        with self._broker._lock:
            self._assigned = set(partitions)
            self._positions = {tp: self._positions.get(tp, 0) for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        with self._broker._lock:
            return set(self._assigned)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        with self._broker._lock:
            found = self._broker._topics.get(topic)
            return set(range(len(found.logs))) if found else None

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        deadline = time.monotonic() + timeout_ms / 1000
        broker = self._broker
        with broker._lock:
            while True:
                if broker.down:
                    raise KafkaUnavailableError("poll failed: the in-memory broker is down")
                fetched = self._fetch(max_records)
                remaining = deadline - time.monotonic()
                if fetched or remaining <= 0:
                    return fetched
                broker._lock.wait(remaining)

    def _fetch(self, max_records: int | None) -> dict[TopicPartition, list[Message]]:
        fetched: dict[TopicPartition, list[Message]] = {}
        budget = max_records if max_records is not None else 1 << 30
        for tp in sorted(self._assigned):
            found = self._broker._topics.get(tp.topic)
            if found is None or tp.partition >= len(found.logs):
                continue
            log = found.logs[tp.partition]
            self._highwater[tp] = len(log)
            start = self._positions.get(tp, 0)
            taken = log[start : start + budget] if start < len(log) else []
            if taken:
                fetched[tp] = taken
                self._positions[tp] = start + len(taken)
                budget -= len(taken)
            if budget <= 0:
                break
        return fetched

    def seek(self, partition: TopicPartition, offset: int) -> None:
        with self._broker._lock:
            self._positions[partition] = offset

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        with self._broker._lock:
            for tp in partitions:
                self._positions[tp] = 0

    def position(self, partition: TopicPartition) -> int | None:
        with self._broker._lock:
            return self._positions.get(partition)

    def highwater(self, partition: TopicPartition) -> int | None:
        with self._broker._lock:
            return self._highwater.get(partition)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        broker = self._broker
        with broker._lock:
            if broker.down:
                raise KafkaCommitError("commit failed: the in-memory broker is down")
            if self._group_id is None:
                raise KafkaCommitError("commit needs a group")
            group = broker._groups.setdefault(self._group_id, _Group())
            stale = [tp for tp in offsets if tp not in self._assigned]
            if stale:
                raise KafkaCommitError(f"commit of partitions not assigned to this member: {stale}")
            group.offsets.update(offsets)

    def topic_id(self, topic: str) -> object | None:
        with self._broker._lock:
            found = self._broker._topics.get(topic)
            return found.id if found else None

    def close(self) -> None:
        if not self._closed and self._group_id is not None and self.subscribed:
            self._broker._leave(self._group_id, self)
        self._closed = True


class _Done:
    def __init__(self, ack: Ack | None, error: KafkaSendError | None) -> None:
        self._ack = ack
        self._error = error

    def get(self, timeout: float) -> Ack:
        if self._error is not None:
            raise self._error
        assert self._ack is not None
        return self._ack


class MemoryProducer:
    """``Producer`` on a MemoryBroker: a send is stored (or refused) at once."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._epoch = broker.epoch
        self.closed = False

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> _Done:
        try:
            return _Done(self._broker._append(topic, key, value, headers, self._epoch), None)
        except KafkaSendError as exc:
            return _Done(None, exc)

    def close(self, timeout: float) -> None:
        self.closed = True


def producer_factory(broker: MemoryBroker, topics: Iterable[str] = ()) -> Callable[[], MemoryProducer]:
    """Like ``kafka_client.producer_factory``: a rebuilt producer first creates ``topics``
    again (a broker that lost its data lost its topics too)."""
    builds = 0

    def build() -> MemoryProducer:
        nonlocal builds
        builds += 1
        if builds > 1:
            broker.ensure_topics(topics)
        return broker.producer()

    return build
