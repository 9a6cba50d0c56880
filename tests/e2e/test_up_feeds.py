"""A feed added at run time survives restarting `newswatch up`, whose embedded broker keeps
nothing: the fetcher's database holds the definition and publishes it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.shared.contract import ITEMS
from newswatch.shared.processes import free_port, spawn
from tests.support.kafka import read_json
from tests.support.procs import http_ok
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _entry(guid: str) -> FeedEntry:
    return FeedEntry(guid, f"Story {guid}", "Text.", f"http://127.0.0.1/s/{guid}", datetime.now(UTC))


def test_runtime_feeds_survive_restarting_up(tmp_path: Path) -> None:
    server = FeedServer().start()
    server.set_feed("/world.xml", "World", [_entry("world-1")])
    server.set_feed("/extra.xml", "Extra", [_entry("extra-1")])
    fetcher_port, broker_port = free_port(), free_port()
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "http": {
            "fetcher_port": fetcher_port,
            "matcher_port": free_port(),
            "notifier_port": free_port(),
            "api_port": free_port(),
        },
        "fetcher": {"start_spread": "0s"},
        "feeds": [{"url": f"{server.base_url}/world.xml", "interval": "1s"}],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    bootstrap = f"127.0.0.1:{broker_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
    log_path = tmp_path / "up.log"

    def start() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            up = spawn(
                [
                    sys.executable,
                    "-m",
                    "newswatch",
                    "up",
                    "--config",
                    str(config_path),
                    "--broker-port",
                    str(broker_port),
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: http_ok(f"http://127.0.0.1:{fetcher_port}/readyz"), 90, what="the fetcher ready")
        return up

    def stop(up: subprocess.Popen[bytes]) -> None:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait(timeout=10)

    def guids() -> set[str]:
        return {str(i["guid"]) for i in read_json(bootstrap, ITEMS)}

    def feeds(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "newswatch", "feeds", *args, "--config", str(config_path)],
            env={**env, "NEWSWATCH_KAFKA_BOOTSTRAP": bootstrap},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    up = start()
    try:
        feeds("add", f"{server.base_url}/extra.xml", "--interval", "1s")
        wait_for(lambda: {"world-1", "extra-1"} <= guids(), 60, what="both feeds polled")
        stop(up)
        server.add_entry("/extra.xml", _entry("extra-2"))
        up = start()  # a new, empty broker: nothing on newswatch.feeds but what the fetcher stored
        wait_for(lambda: "extra-2" in guids(), 60, what="the runtime feed polled after the restart")
        assert "extra-1" not in guids()  # the fetcher remembered it had published that one
        listing = feeds("list")
        assert f"{server.base_url}/extra.xml" in listing and "runtime" in listing, listing
    except BaseException:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        stop(up)
        server.stop()
