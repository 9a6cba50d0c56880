"""Fault injection against the whole pipeline: the three services as OS processes, the real
broker, a feed farm publishing items over time, a receiver recording every delivery.

Each scenario runs in two sizes: ``quick`` (in ``make test``) and ``full`` (marked chaos:
``make test-chaos``, the sizes the issue asks for: 5 kills per service, the broker paused
30 s, the receiver down 2 minutes). Each prints a row (expected, received, missing,
duplicated alerts) in the summary at the end of the pytest run.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALERTS, DLQ, FEEDS, ITEMS, MATCHES, TOPICS
from newswatch.shared.kafka_client import publish_once
from newswatch.shared.kafka_io import Record
from tests.support.chaos import REPORT, SERVICES, Row, Trickle, peak_rss_mb, rig, settle, wait_delivered
from tests.support.kafka import read_records
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Size:
    name: str
    kills: int  # kill -9 rounds per service
    pause: float  # seconds the broker is stopped (SIGSTOP)
    outage: float  # seconds the receiver is down
    items: int  # items the farm publishes


QUICK = Size("quick", kills=1, pause=8.0, outage=8.0, items=40)
FULL = Size("full", kills=5, pause=30.0, outage=120.0, items=240)
LONG = Size("long", kills=5, pause=30.0, outage=600.0, items=240)
SIZES = [
    pytest.param(QUICK, id="quick"),
    pytest.param(FULL, id="full", marks=[pytest.mark.chaos, pytest.mark.timeout(900)]),
]
OUTAGES = [*SIZES, pytest.param(LONG, id="long", marks=[pytest.mark.chaos, pytest.mark.timeout(1500)])]


@pytest.mark.parametrize("size", SIZES)
def test_kill_9_each_service_loses_no_alert(size: Size, tmp_path: Path, broker: EmbeddedBroker) -> None:
    """kill -9 at random moments, each service in turn, restarted at once: nothing missing;
    duplicates only from notifier kills (a send whose outcome was not yet recorded)."""
    rng = random.Random(5)
    senders = 4
    with rig(tmp_path, broker, notifier={"senders": senders}) as pipeline:
        kills = dict.fromkeys(SERVICES, 0)
        every = 0.25
        with Trickle(pipeline.farm, size.items, every) as trickle:
            for _ in range(size.kills):
                for name in rng.sample(SERVICES, len(SERVICES)):
                    time.sleep(rng.uniform(0.5, 3.0))
                    pipeline.kill9(name)
                    kills[name] += 1
                    pipeline.restart(name)
                    pipeline.wait_ready(name)
            trickle.finish()
        row = settle(pipeline, f"kill -9 x{size.kills} per service ({size.name})", timeout=180)
        assert pipeline.alive()
    assert row.missing == 0
    assert row.duplicated <= kills["notifier"] * senders  # the documented window, per notifier kill


@pytest.mark.parametrize("size", SIZES)
def test_broker_unreachable_then_back(size: Size, tmp_path: Path, broker: EmbeddedBroker) -> None:
    """The broker frozen (SIGSTOP) for a while, then resumed: everything resumes by itself."""
    assert broker.pid is not None
    with rig(tmp_path, broker) as pipeline:
        with Trickle(pipeline.farm, size.items, 0.25) as trickle:
            time.sleep(2.0)
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                time.sleep(size.pause)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            trickle.finish()
        row = settle(pipeline, f"broker paused {size.pause:.0f} s ({size.name})", timeout=180)
        assert pipeline.alive()
    assert row.missing == 0
    assert row.duplicated == 0


@pytest.mark.parametrize("size", OUTAGES)
def test_receiver_failing_then_down(size: Size, tmp_path: Path, broker: EmbeddedBroker) -> None:
    """The webhook answers 503 to half the requests, then is down (connection refused), then
    back: within the retry budget (``max_age``, a day by default: retries go by time, not by
    count) every alert is delivered exactly once, and none is dead-lettered."""
    notifier = {"retry_backoff": "200ms", "retry_backoff_max": "3s"}
    with rig(tmp_path, broker, fail_rate=0.5, notifier=notifier) as pipeline:
        with Trickle(pipeline.farm, size.items, 0.25) as trickle:
            trickle.finish()
        time.sleep(3.0)
        pipeline.receiver.down()
        time.sleep(size.outage)
        pipeline.receiver.fail_rate = 0.0
        pipeline.receiver.up()
        row = settle(
            pipeline,
            f"receiver 50% 503, down {size.outage:.0f} s ({size.name})",
            timeout=180,
            note=f"503 answered: {pipeline.receiver.refused}",
        )
        failed = pipeline.metric("notifier", "newswatch_notifier_delivery_attempts_failed_total")
        dead = pipeline.metric("notifier", "newswatch_notifier_deliveries_total", 'outcome="dead"')
    assert pipeline.receiver.refused > 0 and failed >= pipeline.receiver.refused
    assert dead == 0
    assert row.missing == 0
    assert row.duplicated == 0


def test_receiver_down_past_the_policy_dead_letters(tmp_path: Path, broker: EmbeddedBroker) -> None:
    """Down longer than the retry budget (``max_age``): each alert is dead-lettered once, as
    ``expired`` (counted, kept in the delivery log), not retried forever, not delivered late."""
    notifier = {"max_age": "8s", "retry_backoff": "100ms", "retry_backoff_max": "500ms"}
    with rig(tmp_path, broker, notifier=notifier) as pipeline:
        pipeline.receiver.down()
        for _ in range(6):
            pipeline.farm.publish(topic="t-glacier")
        expected = len(pipeline.farm.expected(pipeline.subscriptions))

        def dead() -> float:
            return pipeline.metric("notifier", "newswatch_notifier_deliveries_total", 'outcome="dead"')

        wait_for(lambda: dead() >= expected, 120, interval=1.0, what="every alert dead-lettered")
        pipeline.receiver.up()
        time.sleep(3.0)
        received = pipeline.receiver.received()
        dead_letters = dead()
    reasons = Counter(
        dict(r.headers)["error_type"].decode()
        for r in read_records(broker.bootstrap, DLQ)
        if r.key != b"poison"
    )
    REPORT.append(
        Row(
            "receiver down past max_age (8 s)",
            expected,
            len(received),
            0,
            0,
            note=f"dead-lettered: {dead_letters:.0f} {dict(reasons)}",
        )
    )
    assert dead_letters == expected
    assert reasons == {"DeliveryError:expired": expected}  # each once, as expired
    assert received == []


@pytest.mark.parametrize("size", SIZES)
def test_kill_9_mid_batch_route_and_mid_fan_out(size: Size, tmp_path: Path, broker: EmbeddedBroker) -> None:
    """The notifier is killed while it routes a burst of matches in batches and while it
    delivers a fan-out (each item of the first topic goes to 150 more subscriptions): after a
    restart every alert arrives; a repeat is only a send whose outcome was not yet recorded."""
    senders = 4
    fan = 150
    with rig(tmp_path, broker, notifier={"senders": senders}, fanout=fan) as pipeline:
        kills = 0
        fanned = sorted(pipeline.farm.topics)[0]  # the topic of the fan-out subscriptions
        for round_ in range(size.kills):
            for n in range(12):  # a burst: items land at once, in a few polls
                pipeline.farm.publish(topic=fanned if n % 3 == 0 else None)
            expected = len(pipeline.farm.expected(pipeline.subscriptions))
            before = len(set(pipeline.receiver.received()))
            target = before + max(1, (expected - before) // 4)  # a quarter of the way through
            wait_for(
                lambda t=target: len(set(pipeline.receiver.received())) >= t,  # type: ignore[misc]
                60,
                interval=0.01,
                what=f"the burst under way (round {round_})",
            )
            pipeline.kill9("notifier")
            kills += 1
            pipeline.restart("notifier")
            pipeline.wait_ready("notifier")
        row = settle(pipeline, f"kill -9 mid batch and fan-out x{size.kills} ({size.name})", timeout=180)
        assert pipeline.alive()
    assert row.missing == 0
    assert row.duplicated <= kills * 2 * senders  # in flight, or sent but not yet recorded


def test_poison_message_on_each_topic(
    tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    """Garbage on every topic a service consumes: items and matches go to the DLQ with the
    error, bad topic and feed definitions are counted and ignored, and items keep flowing."""
    with rig(tmp_path, broker) as pipeline:
        poison = b"\xff\x00 not json"
        topics = (ITEMS, MATCHES, TOPICS, FEEDS, ALERTS)
        publish_once(broker.bootstrap, kafka_settings, [Record(t, "poison", poison) for t in topics], "chaos")
        with Trickle(pipeline.farm, 20, 0.25) as trickle:
            trickle.finish()
        row = settle(pipeline, "a poison message on each topic", timeout=120)
        assert pipeline.alive()
        topic_errors = pipeline.metric("matcher", "newswatch_matcher_topic_errors_total", 'reason="decode"')
        feed_errors = pipeline.metric("fetcher", "newswatch_fetcher_feed_definition_errors_total")
    dead_letters = read_records(broker.bootstrap, DLQ)
    sources = {dict(r.headers)["source_topic"].decode() for r in dead_letters}
    assert {ITEMS, MATCHES} <= sources
    assert all(r.value == poison for r in dead_letters)  # the original bytes, kept
    assert topic_errors >= 1 and feed_errors >= 1
    assert row.missing == 0 and row.duplicated == 0


def test_feed_turning_hostile_mid_run(tmp_path: Path, broker: EmbeddedBroker) -> None:
    """Three feeds turn hostile while items flow (an entity blow-up, an endless body, an HTML
    page): each is contained and counted, the fetcher stays small, the other feeds deliver."""
    with rig(tmp_path, broker, feeds=6) as pipeline:
        with Trickle(pipeline.farm, 12, 0.25) as trickle:
            trickle.finish()
        wait_delivered(pipeline, 90)
        pipeline.farm.modes[:3] = ["entities", "endless", "html"]
        with Trickle(pipeline.farm, 24, 0.25) as trickle:  # on the three healthy feeds
            trickle.finish()
        row = settle(pipeline, "three feeds turn hostile mid-run", timeout=120)
        failed = sum(
            pipeline.metric("fetcher", "newswatch_fetcher_polls_total", f'outcome="{outcome}"')
            for outcome in ("too_large", "parse_error", "network_error", "http_error")
        )
        peak = peak_rss_mb(pipeline.procs["fetcher"].pid)
        hostile = {mode: pipeline.farm.requests[mode] for mode in ("entities", "endless", "html")}
        assert pipeline.alive()
    REPORT[-1].note = f"hostile requests {hostile}, failed polls {failed:.0f}, fetcher peak RSS {peak:.0f} MB"
    assert all(hostile.values())
    assert failed >= 1
    assert peak < 400
    assert row.missing == 0 and row.duplicated == 0
