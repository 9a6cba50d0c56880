"""The delivery retry budget and the per-destination circuit, with an injected clock.

A destination down for ``max_age`` minus a minute, then up, gets every alert; one down for
longer loses each alert exactly once, dead-lettered with the reason ``expired``. While it is
down its deliveries wait for one probe rather than each burning attempts. The outbox is a
real SQLite database; the receiver is a scripted channel (down until a given time).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from newswatch.notifier.database import NotifierDb
from newswatch.notifier.destinations import Destinations, destination_of
from newswatch.notifier.dispatcher import Dispatcher, retry_time
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.model import Outgoing
from newswatch.notifier.router import Router
from newswatch.shared.clock import ManualClock
from newswatch.shared.config import NotifierSettings, SubscriptionConfig
from newswatch.shared.contract import DLQ
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_io import Ack, Record
from tests.support.notifier import make_match
from tests.support.waiting import wait_for

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
HOUR = 3600.0


class Receiver:
    """A webhook channel that is down (connection refused) until ``up_at``."""

    def __init__(self, clock: ManualClock, up_at: datetime | None) -> None:
        self.clock = clock
        self.up_at = up_at
        self.attempts = 0
        self.received: Counter[str] = Counter()

    async def send(self, out: Outgoing) -> None:
        self.attempts += 1
        if self.up_at is None or self.clock.now() < self.up_at:
            raise DeliveryError("connection refused", permanent=False, reason="network")
        self.received[out.message_id] += 1


class Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def publish(self, records: Sequence[Record]) -> list[Ack]:
        self.records += records
        return [Ack(r.topic, 0, i) for i, r in enumerate(records)]


class Rig:
    def __init__(self, tmp_path: Path, up_at: datetime | None) -> None:
        self.clock = ManualClock(START)
        self.settings = NotifierSettings(
            max_age=HOUR, retry_backoff=1.0, retry_backoff_max=300.0, circuit_failures=3, senders=8
        )
        self.db = NotifierDb(make_engine(f"sqlite:///{tmp_path}/notifier.sqlite3"), clock=self.clock)
        self.store = self.db.outbox
        self.db.catalog.put_subscription(
            SubscriptionConfig(id="ops", topics=("nk",), to="http://hooks.example.org/h"), "alice"
        )
        self.receiver = Receiver(self.clock, up_at)
        self.sink = Sink()
        self.registry = CollectorRegistry()
        self.dispatcher = Dispatcher(
            self.store,
            {"webhook": self.receiver},
            self.sink,
            NotifierMetrics(self.registry),
            self.settings,
            subscriptions=self.db.catalog.subscription,
            clock=self.clock,
            rng=random.Random(3),
        )
        self.router = Router(self.store, self.settings)
        self.alerts: list[str] = []

    def route(self, count: int, every: float) -> None:
        """``count`` distinct stories, one every ``every`` seconds (the clock moves)."""
        for n in range(count):
            match = make_match(f"s{n:03d}", f"story {n} " + " ".join(f"w{n}x{i}" for i in range(8)))
            sub = self.db.catalog.subscription("ops")
            assert sub is not None
            assert self.router.route(match, [sub]) == {"ops": "queued"}
            self.alerts.append(match.item.item_id)
            self.step()
            self.clock.advance(every)

    def step(self) -> None:
        self.dispatcher.run_once()
        wait_for(self.dispatcher.idle, 10, interval=0.001, what="the sends of this moment")

    def run_until(self, moment: datetime, tick: float = 10.0) -> None:
        while self.clock.now() < moment:
            self.clock.advance(tick)
            self.step()

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[[datetime | None], Rig]]:
    made: list[Rig] = []

    def make(up_at: datetime | None) -> Rig:
        made.append(Rig(tmp_path, up_at))
        return made[-1]

    yield make
    for rig in made:
        rig.dispatcher.close(wait=1)
        rig.db.close()


def test_down_for_max_age_minus_a_minute_then_up_gets_every_alert(
    rig_factory: Callable[[datetime | None], Rig],
) -> None:
    rig = rig_factory(START + timedelta(seconds=HOUR - 60))
    rig.route(20, every=3.0)  # the first alert's budget ends at START + 1h
    rig.run_until(START + timedelta(hours=2))
    rows = rig.store.deliveries(limit=1000)
    assert sorted(r.status for r in rows) == ["delivered"] * 20
    assert sorted(rig.receiver.received.values()) == [1] * 20  # each once
    assert (
        rig.sample("newswatch_notifier_deliveries_total", channel="webhook", kind="alert", outcome="dead")
        == 0
    )
    # While it was down, its deliveries waited for a probe instead of each being retried:
    # far fewer attempts than 20 alerts retried on their own backoff for an hour.
    print(f"attempts while down and after: {rig.receiver.attempts}")
    assert rig.receiver.attempts < 20 + 3 + 60, rig.receiver.attempts


def test_down_longer_than_max_age_dead_letters_each_alert_once_as_expired(
    rig_factory: Callable[[datetime | None], Rig],
) -> None:
    rig = rig_factory(None)
    rig.route(20, every=3.0)
    rig.run_until(START + timedelta(hours=3))
    rows = rig.store.deliveries(limit=1000)
    assert [(r.status, r.failure) for r in rows] == [("dead", "expired")] * 20
    assert all("undelivered after" in (r.last_error or "") for r in rows)
    dead = [r for r in rig.sink.records if r.topic == DLQ]
    assert sorted(dict(r.headers)["alert_id"].decode() for r in dead) == sorted(r.alert_id for r in rows)
    assert (
        rig.sample("newswatch_notifier_deliveries_total", channel="webhook", kind="alert", outcome="dead")
        == 20
    )
    assert rig.receiver.received == Counter()


def test_a_retry_is_never_planned_past_the_budget() -> None:
    settings = NotifierSettings(max_age=HOUR)
    assert retry_time(3, 100.0, 0.0, 30.0, settings) == 130.0
    assert retry_time(3, HOUR - 10, 0.0, 300.0, settings) == HOUR  # the last attempt: at the end
    assert retry_time(3, HOUR, 0.0, 30.0, settings) is None  # spent: expired
    bounded = NotifierSettings(max_age=HOUR, max_attempts=3)
    assert retry_time(3, 100.0, 0.0, 30.0, bounded) is None
    assert retry_time(2, 100.0, 0.0, 30.0, bounded) == 130.0


def test_a_circuit_opens_after_failures_in_a_row_and_one_probe_closes_it() -> None:
    circuits = Destinations(3, backoff=10.0, backoff_max=60.0, rng=random.Random(1))
    key = "https://hooks.example.org:443"
    assert [circuits.verdict(key, 0.0) for _ in range(3)] == ["send"] * 3
    assert [circuits.failed(key, t) for t in (1.0, 2.0, 3.0)] == [False, False, True]
    assert circuits.verdict(key, 4.0) == "wait" and key in circuits.blocked()
    probe_at = circuits.wait_until(key)
    assert 3.0 + 5.0 <= probe_at <= 3.0 + 10.0
    assert circuits.probes_due(probe_at) == [key]
    assert circuits.verdict(key, probe_at) == "probe"
    assert circuits.verdict(key, probe_at) == "wait"  # one probe at a time
    assert circuits.failed(key, probe_at) is False  # the probe failed: open again, longer
    assert circuits.wait_until(key) - probe_at > 10.0 - 1e-9 or circuits.state(key) == "open"
    assert circuits.verdict(key, circuits.wait_until(key)) == "probe"
    assert circuits.succeeded(key, 100.0) is True  # recovered
    assert circuits.verdict(key, 100.0) == "send" and circuits.blocked() == set()
    assert circuits.counts(100.0) == {"closed": 1, "open": 0, "half_open": 0}


def test_destination_keys_name_the_receiver_but_never_a_credential() -> None:
    assert destination_of("https://Hooks.Slack.com/services/T0/B0/SECRET", "smtp.local") == (
        "https://hooks.slack.com:443"
    )
    assert destination_of("http://127.0.0.1:9000/hook", "smtp.local") == "http://127.0.0.1:9000"
    assert destination_of("mailto:desk@example.org", "SMTP.example.org") == "smtp://smtp.example.org"
    chat = destination_of("tgram://123456:SECRETTOKEN/987", "smtp.local")
    assert chat.startswith("tgram://#") and "SECRET" not in chat
