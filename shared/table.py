"""Reading a compacted Kafka topic as a table (latest value per key), on every replica.

Used for ``newswatch.topics`` (matcher) and ``newswatch.feeds`` (fetcher): every replica
needs the whole table, so it reads all partitions without a consumer group, from the
beginning. ``catch_up`` reads up to the highwater seen at start-up, so a service does not
start work with half a table. The highwater comes from the consumer's own fetches, not from
the broker's end offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from newswatch.shared.errors import KafkaUnavailableError, NewswatchError
from newswatch.shared.kafka_io import Consumer, LossGuard, Message, TopicPartition

Apply = Callable[[list[Message]], None]
log = logging.getLogger(__name__)


class TableReader:
    def __init__(self, consumer: Consumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        self._partitions: list[TopicPartition] = []
        self._guard = LossGuard(consumer)

    def assign(
        self, stop: threading.Event, timeout: float = 60.0, start: dict[int, int] | None = None
    ) -> None:
        """Assign every partition, read from the beginning or from ``start[partition]``."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            parts = self._consumer.partitions_for_topic(self._topic)
            if parts:
                self._partitions = [TopicPartition(self._topic, p) for p in sorted(parts)]
                self._consumer.assign(self._partitions)
                self._consumer.seek_to_beginning(*self._partitions)
                for tp in self._partitions:
                    if start and start.get(tp.partition):
                        self._consumer.seek(tp, start[tp.partition])
                return
            time.sleep(0.2)
        raise KafkaUnavailableError(f"no partitions found for {self._topic} within {timeout:.0f}s")

    def catch_up(self, stop: threading.Event, apply: Apply, timeout: float = 60.0) -> None:
        """Apply every record up to the highwater seen at start-up."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            self.poll(apply, 200)
            highs = [self._consumer.highwater(tp) for tp in self._partitions]
            if self._check():
                continue
            positions = [self._consumer.position(tp) for tp in self._partitions]
            if all(h is not None and p is not None and p >= h for p, h in zip(positions, highs, strict=True)):
                return
        if not stop.is_set():
            raise KafkaUnavailableError(f"could not read {self._topic} to its end within {timeout:.0f}s")

    def poll(self, apply: Apply, timeout_ms: int = 0) -> None:
        """Hand every record fetched now to ``apply`` in one call (empty batches are skipped).

        A reader whose log the broker lost while we read (see ``LossGuard``) starts again
        from the beginning, so records published after the loss are not skipped.
        """
        batch = self._consumer.poll(timeout_ms)
        lost = self._check()
        records = [m for tp, messages in batch.items() if tp not in lost for m in messages]
        if records:
            apply(records)

    def _check(self) -> set[TopicPartition]:
        """The partitions whose log the broker lost (now read from the start). A topic
        recreated after the loss may have another partition count (a client's metadata
        request can auto-create it with the broker's default): all of them are read."""
        lost = self._guard.check(self._partitions)
        if lost:
            parts = self._consumer.partitions_for_topic(self._topic)
            if parts and sorted(parts) != [tp.partition for tp in self._partitions]:
                log.warning(
                    "topic recreated with other partitions",
                    extra={"topic": self._topic, "partitions": sorted(parts)},
                )
                self._partitions = [TopicPartition(self._topic, p) for p in sorted(parts)]
                self._consumer.assign(self._partitions)
                self._consumer.seek_to_beginning(*self._partitions)
                lost = set(self._partitions)
        return lost

    def close(self) -> None:
        self._consumer.close()


def read_to_end(consumer: Consumer, topic: str, stop: threading.Event, apply: Apply) -> None:
    """Reads ``topic`` once, from the beginning to the highwater seen at the start, handing
    each batch to ``apply``; the consumer (groupless) is closed afterwards."""
    reader = TableReader(consumer, topic)
    try:
        reader.assign(stop)
        reader.catch_up(stop, apply)
    finally:
        reader.close()


def live_keys(consumer: Consumer, topic: str, stop: threading.Event) -> set[str]:
    """Keys whose latest record on ``topic`` is a value, not a tombstone (read once, to the end)."""
    latest: dict[str, bool] = {}

    def collect(records: list[Message]) -> None:
        for record in records:
            if record.key is not None:
                latest[record.key.decode("utf-8", "replace")] = record.value is not None

    read_to_end(consumer, topic, stop, collect)
    return {key for key, present in latest.items() if present}


class Every(threading.Thread):
    """Calls ``task`` every ``every`` seconds until ``stop``: a table's repair check (the
    notifier's topics, the fetcher's feed definitions). A broker or database outage is
    logged and the task tried again next time."""

    def __init__(self, name: str, task: Callable[[], object], every: float, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._task = task
        self._every = every
        self._halt = stop

    def run(self) -> None:
        while not self._halt.wait(self._every):
            try:
                self._task()
            except (NewswatchError, OSError) as exc:
                log.warning(
                    "periodic check failed; will try again", extra={"check": self.name, "error": str(exc)}
                )
