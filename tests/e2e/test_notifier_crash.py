"""kill -9 the notifier repeatedly while 500 matches flow: every alert arrives, and a
``webhook-id`` arrives twice only within the documented window (a send whose outcome was
not yet recorded when the process died), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from newswatch.notifier.model import alert_id_for
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, MATCHES, encode
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.processes import free_port
from tests.support.hooks import HookServer
from tests.support.notifier import make_match
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
MATCHES_SENT = 500
KILLS = 4
SENDERS = 8
WORDS = [
    "storm",
    "flood",
    "senate",
    "budget",
    "vaccine",
    "rocket",
    "merger",
    "strike",
    "harvest",
    "election",
    "summit",
    "drought",
    "tariff",
    "rally",
    "glacier",
    "reactor",
    "verdict",
    "protest",
    "census",
    "satellite",
    "pipeline",
    "ceasefire",
]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_while_matches_flow_loses_no_alert(
    backend: str,
    tmp_path: Path,
    broker: EmbeddedBroker,
    kafka_settings: KafkaSettings,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = random.Random(11)
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    hook = HookServer().start()
    database = {"database_url": request.getfixturevalue("postgres_url")} if backend == "postgresql" else {}
    config_path = write_config(
        tmp_path,
        notifier={
            "senders": SENDERS,
            "retry_backoff": "100ms",
            "retry_backoff_max": "1s",
            "timeout": "2s",
            "smtp": {"timeout": "2s"},
        },
        topics=[{"id": "nk", "query": "Korea"}],
        subscriptions=[{"id": "ops", "topics": ["nk"], "to": hook.url}],
        **database,
    )
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    args = ["notifier", "--config", str(config_path), "--http-port", str(free_port())]
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "crash-test"),
        PipelineMetrics(CollectorRegistry(), "crash-test", "test"),
        send_timeout=10,
    )
    expected: set[str] = set()
    stop_sending = threading.Event()

    def send_matches() -> None:
        for n in range(MATCHES_SENT):  # bounded: 500 matches, one every 10 ms
            if stop_sending.wait(0.01):
                return
            title = " ".join(rng.sample(WORDS, 6)) + f" {n}"  # distinct stories, not near-duplicates
            match = make_match(f"crash{n:04d}", title, f"Report number {n} on {title}.")
            publisher.publish([Record(MATCHES, "nk", encode(match))])
            expected.add(alert_id_for("ops", match.item.item_id))

    notifier = ServiceProcess("notifier", args, env, tmp_path).start()
    sender = threading.Thread(target=send_matches)
    sender.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 2.5))
            os.kill(notifier.pid, signal.SIGKILL)
            assert notifier.proc is not None
            notifier.proc.wait(timeout=10)
            notifier.start()
        sender.join(timeout=60)

        def all_received() -> bool:
            return expected <= {h.headers["webhook-id"] for h in hook.delivered()}

        wait_for(all_received, 120, interval=0.5, what="every alert to arrive")
    except BaseException:
        print(notifier.log_tail())
        raise
    finally:
        stop_sending.set()
        notifier.stop()
        publisher.close()
        hook.stop()
    counts = Counter(h.headers["webhook-id"] for h in hook.delivered())
    twice = {alert_id: n for alert_id, n in counts.items() if n > 1}
    with capsys.disabled():  # the report the issue asks for, in the CI log
        print(
            f"\n{backend}: kill -9 x{KILLS}, alerts expected {len(expected)}, received {len(counts)} distinct, "
            f"{sum(counts.values())} requests, ids received more than once: {len(twice)} "
            f"(window: at most {SENDERS} sends in flight per kill)"
        )
    assert len(expected) == MATCHES_SENT and expected <= set(counts)
    # The documented window: a send whose outcome was not recorded when the process died is
    # sent again after its lease, at most the sends in flight at each kill.
    assert len(twice) <= KILLS * SENDERS and max(twice.values(), default=1) <= KILLS + 1
