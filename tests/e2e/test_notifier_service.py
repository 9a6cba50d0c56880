"""The notifier as its own OS process, on SQLite and on PostgreSQL, with a real webhook
endpoint, a real SMTP server and the real broker: one story from three feeds is one alert
per subscription (the others listed as also reported), a 410 is dead-lettered with its
reason and visible in ``GET /deliveries``, and the API answers with a CLI-made token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALERTS, ALL_TOPICS, DLQ, MATCHES, encode
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.processes import free_port
from tests.support.hooks import HookServer
from tests.support.kafka import read_records
from tests.support.notifier import SmtpSink, make_match
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess, cli_token, http_ok, metric_value
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
LEDE = "Pyongyang has sent thousands of soldiers to fight alongside Russian forces in Kursk."
SYNDICATED = [
    ("nk1", "North Korean troops deployed to Ukraine front, officials say", "Reuters"),
    ("nk2", "North Korean troops deployed to Ukraine front - officials say", "AP"),
    ("nk3", "North Korean troops deployed to Ukraine front, officials say", "BBC"),
]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_notifier_process_alerts_once_per_story_and_logs_failures(
    backend: str,
    tmp_path: Path,
    broker: EmbeddedBroker,
    kafka_settings: KafkaSettings,
    request: pytest.FixtureRequest,
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    hook, gone, smtp = HookServer().start(), HookServer().start(), SmtpSink().start()
    gone.reply(410)
    api_port, http_port = free_port(), free_port()
    database = {"database_url": request.getfixturevalue("postgres_url")} if backend == "postgresql" else {}
    config_path = write_config(
        tmp_path,
        http={"api_port": api_port},
        notifier={"smtp": {"host": "127.0.0.1", "port": smtp.port, "sender": "alerts@newswatch.test"}},
        topics=[{"id": "nk", "query": "North Korea"}],
        subscriptions=[
            {"id": "ops", "topics": ["nk"], "to": hook.url},
            {"id": "mail", "topics": ["nk"], "to": "mailto:desk@newswatch.test"},
            {"id": "gone", "topics": ["nk"], "to": gone.url},
        ],
        **database,
    )
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    notifier = ServiceProcess(
        "notifier", ["notifier", "--config", str(config_path), "--http-port", str(http_port)], env, tmp_path
    ).start()
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "e2e"),
        PipelineMetrics(CollectorRegistry(), "e2e", "test"),
        send_timeout=10,
    )
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{http_port}/readyz"), 60, what="notifier ready")
        matches = [make_match(i, t, LEDE, source=s, host=f"{s.lower()}.example") for i, t, s in SYNDICATED]
        publisher.publish([Record(MATCHES, "nk", encode(m)) for m in matches])
        wait_for(lambda: len(hook.delivered()) >= 1 and len(smtp.received()) >= 1, 60, what="the alerts")
        token = cli_token(config_path, "config")
        auth = {"Authorization": f"Bearer {token}"}
        api = f"http://127.0.0.1:{api_port}"

        def log(status: str) -> list[dict[str, Any]]:
            response = httpx.get(f"{api}/deliveries", params={"status": status}, headers=auth, timeout=10)
            assert response.status_code == 200, response.text
            rows: list[dict[str, Any]] = response.json()
            return rows

        wait_for(lambda: len(log("delivered")) == 2 and len(log("dead")) == 1, 60, what="the delivery log")
        wait_for(
            lambda: all(len(r["also_reported_by"]) == 2 for r in log("delivered")), 30, what="duplicates"
        )
        (dead,) = log("dead")
        assert (
            dead["subscription"] == "gone" and dead["failure"] == "http_4xx" and "410" in str(dead["error"])
        )
        metrics = f"http://127.0.0.1:{http_port}/metrics"
        assert (
            metric_value(metrics, "newswatch_notifier_duplicates_suppressed_total") == 6
        )  # 2 copies x 3 subs
    except BaseException:
        print(notifier.log_tail())
        raise
    finally:
        assert notifier.stop() == 0
        publisher.close()
        for server in (hook, gone, smtp):
            server.stop()
    assert len(hook.delivered()) == 1 and len(smtp.received()) == 1 and len(gone.all()) == 1
    mail = smtp.received()[0]
    assert mail["To"] == "desk@newswatch.test" and mail["Subject"].startswith("[nk] North Korean troops")
    alerts = [json.loads(r.value) for r in read_records(broker.bootstrap, ALERTS)]
    assert sorted(a["subscription_id"] for a in alerts) == ["mail", "ops"]
    dlq = [{k: v.decode() for k, v in r.headers} for r in read_records(broker.bootstrap, DLQ)]
    assert [h["subscription_id"] for h in dlq] == ["gone"]
