"""End to end: the three services as separate OS processes, real broker, real HTTP servers.

Asserts the walking-skeleton promises: the NATO/North Korea item produces exactly one
alert for nk-ukraine, an unrelated topic gets none, restarting fetcher and notifier does
not alert again, and a topic added with `newswatch apply` while running starts matching
without restarting the matcher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.demo.receiver import WebhookReceiver
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ALERTS, ITEMS, MATCHES
from newswatch.shared.processes import free_port
from newswatch.shared.tracing import from_headers, trace_id
from tests.support.kafka import read_json, read_records
from tests.support.procs import ServiceProcess, http_ok, logs_on_failure, metric_value
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

NATO_TITLE = "NATO chief calls reports of North Korean troops helping Russia 'worrying'"


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alerts: list[tuple[dict[str, str], dict[str, Any]]] = []

    def __call__(self, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self.lock:
            self.alerts.append((headers, body))

    def titles(self, topic: str) -> list[str]:
        with self.lock:
            return [b["item"]["title"] for _, b in self.alerts if b["topic"]["id"] == topic]


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, WebhookReceiver]]:
    rec = Recorder()
    receiver = WebhookReceiver(rec).start()
    yield rec, receiver
    receiver.stop()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newswatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pipeline_end_to_end(
    tmp_path: Path, broker: EmbeddedBroker, feeds: FeedServer, recorder: tuple[Recorder, WebhookReceiver]
) -> None:
    rec, receiver = recorder
    ports = {name: free_port() for name in ("fetcher", "matcher", "notifier")}
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "http": {"api_port": 0},
        "feeds": [
            {"url": f"{feeds.base_url}{p}", "interval": "1s"}
            for p in ("/world.xml", "/tech.xml", "/sport.xml")
        ],
        "topics": [
            {"id": "nk-ukraine", "query": "North Korea Ukraine deployment"},
            {"id": "volcano", "query": "volcano eruption Iceland"},
        ],
        "subscriptions": [
            {"id": "ops", "topics": ["nk-ukraine"], "to": receiver.url},
            {"id": "geo", "topics": ["volcano"], "to": receiver.url},
        ],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap, "NEWSWATCH_LOG_LEVEL": "INFO"}
    full_env = {**os.environ, **env}
    applied = run_cli("apply", "-f", str(config_path), "--direct", "--config", str(config_path), env=full_env)
    assert applied.returncode == 0, applied.stderr
    assert "nk-ukraine" in applied.stdout

    procs = {
        name: ServiceProcess(
            name, [name, "--config", str(config_path), "--http-port", str(ports[name])], env, tmp_path
        ).start()
        for name in ("fetcher", "matcher", "notifier")
    }
    with logs_on_failure(procs.values()):
        # 1. exactly one alert for the NATO item, none for the unrelated topic
        wait_for(lambda: rec.titles("nk-ukraine"), 90, what="the nk-ukraine alert")
        headers, body = next((h, b) for h, b in rec.alerts if b["topic"]["id"] == "nk-ukraine")
        assert body["item"]["title"] == NATO_TITLE
        assert headers["webhook-id"] == body["alert_id"]
        assert body["why"]["terms"]["North Korea"] == ["North", "Korean"]  # an alias of the starter list
        snippet = body["why"]["snippet"]
        assert any(snippet[s:e] == "North Korean" for s, e in body["why"]["highlights"])
        assert "deployed" in body["why"]["terms"]["deployment"]
        # the trace started by the fetcher reaches the webhook and every service's logs
        trace = trace_id(headers.get("traceparent"))
        (item_record,) = [
            r
            for r in read_records(broker.bootstrap, ITEMS)
            if json.loads(r.value)["item_id"] == body["item"]["id"]
        ]
        assert trace is not None and trace == trace_id(from_headers(item_record.headers))
        for name in ("matcher", "notifier"):
            log_path = procs[name].log_path
            wait_for(lambda: trace in log_path.read_text(), 10, what=f"the trace in the {name} log")  # noqa: B023

        # 2. restart fetcher and notifier: no second alert for the same item
        matcher_pid = procs["matcher"].pid
        for name in ("fetcher", "notifier"):
            assert procs[name].stop() == 0, procs[name].log_tail()
            procs[name].start()
        metrics = {n: f"http://127.0.0.1:{p}/metrics" for n, p in ports.items()}
        wait_for(lambda: http_ok(f"http://127.0.0.1:{ports['notifier']}/readyz"), 60, what="notifier ready")
        wait_for(
            lambda: metric_value(metrics["fetcher"], "newswatch_fetcher_polls_total") >= 6,
            60,
            what="re-polls",
        )
        # A fresh matching item acts as a barrier: once it is alerted, everything before it was processed.
        feeds.add_entry(
            "/world.xml",
            FeedEntry(
                "barrier-1",
                "North Korean troop deployment to Ukraine confirmed by Seoul",
                "South Korea's intelligence service confirmed the deployment of North Korean units.",
                f"{feeds.base_url}/world/barrier",
                datetime.now(UTC) - timedelta(minutes=1),
            ),
        )
        wait_for(lambda: len(rec.titles("nk-ukraine")) >= 2, 60, what="the barrier alert")
        assert rec.titles("nk-ukraine").count(NATO_TITLE) == 1
        assert rec.titles("volcano") == []
        alerts_topic = [a for a in read_json(broker.bootstrap, ALERTS) if a["item"]["title"] == NATO_TITLE]
        assert len(alerts_topic) == 1

        # 3. a topic applied at runtime matches new items without a matcher restart
        extra = tmp_path / "more-topics.yaml"
        extra.write_text(yaml.safe_dump({"topics": [{"id": "heatwave", "query": "heatwave Europe record"}]}))
        applied = run_cli("apply", "-f", str(extra), "--direct", env=full_env)
        assert applied.returncode == 0, applied.stderr
        wait_for(
            lambda: metric_value(metrics["matcher"], "newswatch_matcher_topics") >= 3, 30, what="topic loaded"
        )
        feeds.add_entry(
            "/world.xml",
            FeedEntry(
                "heat-1",
                "Europe records its hottest November day",
                "A late heatwave broke temperature records across southern Europe.",
                f"{feeds.base_url}/world/heat",
                datetime.now(UTC),
            ),
        )
        heat = wait_for(
            lambda: [m for m in read_json(broker.bootstrap, MATCHES) if m["topic_id"] == "heatwave"],
            60,
            what="a heatwave match",
        )
        assert heat[0]["item"]["title"] == "Europe records its hottest November day"
        assert procs["matcher"].pid == matcher_pid and procs["matcher"].alive()

        # 4. the metrics promised by the README are there and moving
        assert metric_value(metrics["fetcher"], "newswatch_fetcher_items_published_total") >= 1
        assert metric_value(metrics["matcher"], "newswatch_matcher_items_matched_total") >= 2
        assert metric_value(metrics["notifier"], "newswatch_notifier_alerts_sent_total") >= 1
        assert (
            'newswatch_notifier_deliveries_total{channel="webhook",kind="alert",outcome="dead"} 0.0'
            in httpx.get(metrics["notifier"]).text
        )
    for proc in procs.values():
        assert proc.proc is not None and proc.proc.returncode == 0, f"{proc.name}: {proc.log_tail()}"
