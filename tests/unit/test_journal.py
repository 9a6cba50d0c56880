"""The publish journal's pure parts, and the publisher's report of partial acknowledgement."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from newswatch.fetcher.dedup import Decision, Remember
from newswatch.fetcher.pending import PendingBatch, settle
from newswatch.fetcher.recovery import floors_of
from newswatch.shared.errors import KafkaSendError
from newswatch.shared.kafka_io import Ack, PartialPublishError, Publisher, Record
from newswatch.shared.metrics import PipelineMetrics
from tests.support.items import make_item


def batch(batch_id: str, floors: dict[int, int]) -> PendingBatch:
    a, b = make_item("aaaa"), make_item("bbbb", revision=3)
    decision = Decision(
        publish=[a, b],
        remember=[Remember(a.item_id, "h", 1), Remember(b.item_id, "h", 3), Remember("skipped_", "h", 1)],
        claims=[(a.canonical_url, a.item_id), (b.canonical_url, b.item_id)],
        also_in=["https://elsewhere/x"],
    )
    return PendingBatch.of(batch_id, "https://f/feed", floors, decision)


def test_batch_round_trips_through_its_row() -> None:
    original = batch("b1", {0: 5, 3: 9})
    again = PendingBatch.from_row("b1", original.feed_url, original.floors_json(), original.to_json(), 1.5)
    assert again == PendingBatch(**{**original.__dict__, "created_at": 1.5})


def test_settle_drops_only_what_kafka_never_got() -> None:
    pending = batch("b1", {})
    everything = settle(pending, found=set(pending.publish))
    assert (everything.published, everything.not_published) == (2, 0)
    assert [r.item_id for r in everything.remember] == ["aaaa____", "bbbb____", "skipped_"]
    half = settle(pending, found={("aaaa____", 1), ("bbbb____", 2)})  # revision 2 is not ours
    assert (half.published, half.not_published) == (1, 1)
    assert [r.item_id for r in half.remember] == ["aaaa____", "skipped_"]
    assert half.claims == [("https://news.example/aaaa", "aaaa____")]
    assert half.also_in == ["https://elsewhere/x"]


def test_floors_are_the_lowest_per_partition_and_zero_where_unknown() -> None:
    assert floors_of([]) == {}
    assert floors_of([batch("x", {0: 5, 1: 7}), batch("y", {0: 3})]) == {0: 3, 1: 0}


class _Sent:
    """A send future: ``get`` returns where the record went, or raises."""

    def __init__(self, result: Ack | KafkaSendError) -> None:
        self._result = result

    def get(self, timeout: float) -> Ack:
        if isinstance(self._result, KafkaSendError):
            raise self._result
        return self._result


class _HalfProducer:
    """Acknowledges records whose key starts with 'ok', times out the others."""

    def __init__(self) -> None:
        self.offset = 0

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> _Sent:
        if key is not None and key.startswith(b"ok"):
            self.offset += 1
            return _Sent(Ack(topic, 1, self.offset))
        return _Sent(KafkaSendError("KafkaTimeoutError: no ack"))

    def close(self, timeout: float) -> None:
        pass


def test_publisher_returns_acks_in_order_and_reports_partial_ones() -> None:
    publisher = Publisher(
        _HalfProducer, PipelineMetrics(CollectorRegistry(), "t", "0"), 1, attempts=2, sleep=lambda _s: None
    )
    assert publisher.publish([Record("t", "ok1", b""), Record("t", "ok2", b"")]) == [
        Ack("t", 1, 1),
        Ack("t", 1, 2),
    ]
    with pytest.raises(PartialPublishError) as caught:
        publisher.publish([Record("t", "bad", b""), Record("t", "ok3", b""), Record("t", "bad2", b"")])
    assert caught.value.acked == {1: Ack("t", 1, 3)}
    assert "2 record(s) not acknowledged after 2 attempts" in str(caught.value)
