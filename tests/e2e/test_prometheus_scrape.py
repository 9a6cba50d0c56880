"""A real Prometheus scrapes the running pipeline with the shipped scrape config and rules
(targets rewritten to the local ports): every service is ``up`` and the key series have data.

Needs Debian's ``prometheus`` (``make lint-deploy`` installs it): a missing binary fails the
test under ``CI=true`` and skips it, saying so, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from newswatch.demo.feed_server import FeedServer, demo_entries
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.processes import free_port, spawn, terminate
from tests.support.hooks import HookServer
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SERVICES = {"fetcher": "newswatch-fetcher", "matcher": "newswatch-matcher", "notifier": "newswatch-notifier"}
KEY_SERIES = (
    "newswatch_fetcher_polls_total",
    "newswatch_fetcher_items_published_total",
    "newswatch_matcher_items_evaluated_total",
    "newswatch_notifier_matches_received_total",
    "newswatch_notifier_deliveries_total",
    "newswatch_consumer_lag",
    "newswatch_build_info",
)


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus is not installed (Debian package prometheus; make lint-deploy installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def local_config(ports: dict[str, int]) -> dict[str, Any]:
    """The shipped scrape config with its targets pointed at this machine's ports."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / path) for path in config["rule_files"]]
    config.pop("alerting")  # the compose stack's Alertmanager: tests reach 127.0.0.1 only
    by_job = {job: service for service, job in SERVICES.items()}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(by_job)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[by_job[job['job_name']]]}"]}]
    return config


def query(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_prometheus_scrapes_every_service_with_the_shipped_config(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    binary = prometheus_binary()
    feeds, hook = FeedServer().start(), HookServer().start()
    for path, (title, entries) in demo_entries(feeds.base_url, datetime.now(UTC)).items():
        feeds.set_feed(path, title, entries)
    ports = {name: free_port() for name in SERVICES}
    config_path = write_config(
        tmp_path,
        fetcher={"start_spread": "0s"},
        feeds=[{"url": f"{feeds.base_url}/world.xml", "interval": "2s"}],
        topics=[{"id": "nk-ukraine", "query": "North Korea Ukraine deployment"}],
        subscriptions=[{"id": "ops", "topics": ["nk-ukraine"], "to": hook.url}],
    )
    prom_path = tmp_path / "prometheus.yml"
    prom_path.write_text(yaml.safe_dump(local_config(ports)))
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    procs = [
        ServiceProcess(
            name, [name, "--config", str(config_path), "--http-port", str(ports[name])], env, tmp_path
        ).start()
        for name in ("notifier", "matcher", "fetcher")  # topics are published by the notifier
    ]
    prom_port = free_port()
    base = f"http://127.0.0.1:{prom_port}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        prometheus = spawn(
            [
                binary,
                f"--config.file={prom_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: len(hook.delivered()) >= 1, 90, what="an alert through the pipeline")

        def all_up() -> bool:
            try:
                series = query(base, 'up{job=~"newswatch-.*"}')
            except httpx.HTTPError:
                return False
            return len(series) == 3 and all(s["value"][1] == "1" for s in series)

        wait_for(all_up, 60, interval=0.5, what="every service up in Prometheus")

        def has_data() -> list[str]:
            return [name for name in KEY_SERIES if not query(base, f"sum({name})")]

        wait_for(lambda: not has_data(), 60, interval=1.0, what="the key series")

        def counted(expr: str) -> bool:
            # A scrape may land between the webhook answering and the counter moving, so the
            # first scraped value can be 0: wait for a scrape taken after the work was counted.
            result = query(base, expr)
            return bool(result) and float(result[0]["value"][1]) >= 1

        for expr in (
            "sum(newswatch_fetcher_items_published_total)",
            'sum(newswatch_notifier_deliveries_total{outcome="delivered"})',
        ):
            wait_for(partial(counted, expr), 30, interval=1.0, what=f"{expr} >= 1")
        rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        shipped = yaml.safe_load((DEPLOY / "rules" / "newswatch.rules.yml").read_text())
        assert sum(len(g["rules"]) for g in rules) == sum(len(g["rules"]) for g in shipped["groups"]) and all(
            r["health"] in ("ok", "unknown") for g in rules for r in g["rules"]
        )
    except BaseException:
        for proc in procs:
            print(f"--- {proc.name} ---\n{proc.log_tail()}")
        print("--- prometheus ---\n" + (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        terminate(prometheus, grace=10)
        for proc in procs:
            proc.stop()
        feeds.stop()
        hook.stop()
