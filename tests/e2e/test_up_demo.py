"""`newswatch up` and `newswatch demo` as a user runs them, stopped like Ctrl-C in a terminal."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from newswatch.demo.feed_server import FeedServer
from newswatch.demo.receiver import WebhookReceiver
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.processes import free_port, spawn
from tests.support.procs import descendants, http_ok, pid_alive
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def ctrl_c(pid: int) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
    os.killpg(pid, signal.SIGINT)


def test_up_uses_configured_broker_restarts_crashed_service_and_stops_cleanly(
    tmp_path: Path, broker: EmbeddedBroker, feeds: FeedServer
) -> None:
    alerts: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(_h: dict[str, str], body: dict[str, Any]) -> None:
        with lock:
            alerts.append(body)

    receiver = WebhookReceiver(record).start()
    ports = {n: free_port() for n in ("fetcher_port", "matcher_port", "notifier_port", "api_port")}
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "http": ports,
        "feeds": [{"url": f"{feeds.base_url}/world.xml", "interval": "2s"}],
        "topics": [{"id": "nk-ukraine", "query": "North Korea Ukraine deployment"}],
        "subscriptions": [{"id": "ops", "topics": ["nk-ukraine"], "to": receiver.url}],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    log = (tmp_path / "up.log").open("wb")
    up = spawn(
        [sys.executable, "-m", "newswatch", "up", "--config", str(config_path)],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        wait_for(lambda: alerts, 90, what="an alert through `up`")
        tree = descendants(up.pid)
        commands = [cmdline(p) for p in tree]
        assert not any("tansu" in c for c in commands), "up must not start a broker when one is configured"
        services = {
            name: p
            for p in tree
            for name in ("fetcher", "matcher", "notifier")
            if f"newswatch {name}" in cmdline(p)
        }
        assert set(services) == {"fetcher", "matcher", "notifier"}, commands
        assert f"using Kafka at {broker.bootstrap}" in (tmp_path / "up.log").read_text()

        # A crashed service is restarted (with backoff) and the restart is logged.
        os.kill(services["matcher"], signal.SIGKILL)

        def new_matcher() -> int | None:
            for pid in descendants(up.pid):
                if "newswatch matcher" in cmdline(pid) and pid != services["matcher"]:
                    return pid
            return None

        wait_for(new_matcher, 30, what="the matcher to be restarted")
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{ports['matcher_port']}/readyz"),
            60,
            what="matcher ready again",
        )
        assert "service exited; restarting" in (tmp_path / "up.log").read_text()

        tree = descendants(up.pid)
        ctrl_c(up.pid)
        assert up.wait(timeout=60) == 0
        wait_for(lambda: not any(pid_alive(p) for p in tree), 10, what="every child to exit")
        assert len(alerts) == 1
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
        receiver.stop()


def test_demo_prints_the_north_korea_alert_and_leaves_no_process(tmp_path: Path) -> None:
    out_path = tmp_path / "demo.out"
    out = out_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
    demo = spawn(
        [sys.executable, "-m", "newswatch", "demo", "--workdir", str(tmp_path / "demo")],
        env=env,
        stdout=out,
        stderr=out,
    )
    try:
        wait_for(lambda: "ALERT [nk-ukraine]" in out_path.read_text(), 90, what="the demo alert")
        wait_for(lambda: "why:" in out_path.read_text(), 5, what="the complete alert")
        text = out_path.read_text()
        assert "North Korean troops" in text
        assert "Demo World News" in text  # source
        assert "/world/nato-north-korea" in text  # link
        assert "deployment → deployed" in text  # why it matched
        tree = descendants(demo.pid)
        assert any("tansu" in cmdline(p) for p in tree), "demo runs the embedded broker"
        assert text.count("ALERT [") == 1, "only the North Korea story matches the demo topic"
        ctrl_c(demo.pid)
        assert demo.wait(timeout=60) == 0
        wait_for(lambda: not any(pid_alive(p) for p in tree), 10, what="every demo process to exit")
    finally:
        if demo.poll() is None:
            demo.kill()
        out.close()
