"""SIGTERM while a poll is in flight: the poll finishes, its item is published, exit 0."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ITEMS
from newswatch.shared.processes import free_port
from tests.support.http import Reply, serve
from tests.support.kafka import read_json
from tests.support.procs import ServiceProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>'
    b"<item><title>Late news</title><guid>late-1</guid><link>https://news.example/late-1</link></item>"
    b"</channel></rss>"
)


def test_sigterm_lets_the_poll_in_flight_finish(tmp_path: Path, broker: EmbeddedBroker) -> None:
    def slow(_headers: dict[str, str]) -> Reply:
        time.sleep(2)
        return Reply(200, RSS, {"Content-Type": "application/rss+xml"})

    with serve({"/slow.xml": slow}) as (base, seen):
        config = {
            "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
            "allow_networks": ["127.0.0.0/8"],
            "state_dir": str(tmp_path / "state"),
            "stop_grace": "15s",
            "fetcher": {"start_spread": "0s"},
            "feeds": [{"url": f"{base}/slow.xml", "interval": "60s"}],
        }
        config_path = tmp_path / "newswatch.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
        args = ["fetcher", "--config", str(config_path), "--http-port", str(free_port())]
        fetcher = ServiceProcess("fetcher", args, env, tmp_path).start()
        try:
            wait_for(lambda: bool(seen), 60, interval=0.1, what="the fetcher's first request")
            assert fetcher.proc is not None
            fetcher.proc.send_signal(signal.SIGTERM)
            code = fetcher.proc.wait(timeout=30)
        except BaseException:
            print(fetcher.log_tail())
            raise
        finally:
            fetcher.stop()
    log = fetcher.log_path.read_text()
    assert code == 0, log[-3000:]
    assert [i["title"] for i in read_json(broker.bootstrap, ITEMS)] == ["Late news"]
    assert "polls cut short" not in log and "fetcher stopped" in log
