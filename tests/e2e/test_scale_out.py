"""Two matchers and two notifiers on one PostgreSQL share the partitions of their topics and,
together, deliver each alert exactly once: every replica does part of the work (a consumer
group gives each partition to one member), and the shared outbox and story index keep a
match's alerts from going out twice whichever replica routes or sends them.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ALL_TOPICS
from newswatch.shared.kafka_client import ensure_topics
from newswatch.shared.processes import free_port
from tests.conftest import TEST_KAFKA
from tests.support.chaos import TOPIC_WORDS, Farm, Receiver
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess, http_ok, metric_value
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
ITEMS = 120


def test_two_matchers_and_two_notifiers_deliver_each_alert_once(
    tmp_path: Path, broker: EmbeddedBroker, postgres_url: str
) -> None:
    ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)  # 3 partitions each
    topics = {f"t-{word}": word for word in TOPIC_WORDS}
    ids = sorted(topics)
    subscriptions = {"ops": tuple(ids), "desk": tuple(ids[:3]), "night": tuple(ids[3:])}
    farm = Farm(6, topics, seed=11, match_share=0.9).start()
    receiver = Receiver().up()
    config = write_config(
        tmp_path,
        database_url=postgres_url,
        fetcher={"start_spread": "0s", "backfill_max_items": 0},
        feeds=[{"url": url, "interval": "1s"} for url in farm.urls],
        topics=[{"id": tid, "query": word} for tid, word in sorted(topics.items())],
        subscriptions=[
            {"id": sub, "topics": list(t), "to": receiver.url} for sub, t in sorted(subscriptions.items())
        ],
    )
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    procs: dict[str, tuple[ServiceProcess, int]] = {}
    try:
        for name in ("notifier-a", "notifier-b", "matcher-a", "matcher-b", "fetcher-a"):
            service, port = name.split("-")[0], free_port()
            args = [service, "--config", str(config), "--http-port", str(port)]
            extra = {"NEWSWATCH_HTTP_API_PORT": "0"}
            procs[name] = (ServiceProcess(name, args, {**env, **extra}, tmp_path).start(), port)
        # A replica is ready once the group gave it partitions: with both ready, the group
        # has rebalanced over both.
        for name, (_proc, port) in procs.items():
            ready = f"http://127.0.0.1:{port}/readyz"
            wait_for(lambda url=ready: http_ok(url), 120, what=f"{name} ready")  # type: ignore[misc]
        for _ in range(ITEMS):
            farm.publish()
        expected = farm.expected(subscriptions)
        wait_for(lambda: expected <= set(receiver.received()), 180, interval=0.5, what="every alert")
        time.sleep(3.0)  # a late duplicate still counts
        received = Counter(receiver.received())

        def per_replica(service: str, metric: str) -> list[float]:
            return [
                metric_value(f"http://127.0.0.1:{port}/metrics", metric)
                for name, (_p, port) in sorted(procs.items())
                if name.startswith(service)
            ]

        evaluated = per_replica("matcher", "newswatch_matcher_items_evaluated_total")
        routed = per_replica("notifier", "newswatch_notifier_matches_received_total")
        sent = per_replica("notifier", "newswatch_notifier_alerts_sent_total")
    finally:
        for proc, _port in procs.values():
            proc.stop()
        receiver.down()
        farm.stop()
    assert set(received) == expected
    assert [alert for alert, n in received.items() if n > 1] == []  # each exactly once
    assert all(n > 0 for n in evaluated), evaluated  # both matchers took partitions
    assert all(n > 0 for n in routed), routed  # both notifiers routed matches
    assert sum(sent) == len(expected), sent
