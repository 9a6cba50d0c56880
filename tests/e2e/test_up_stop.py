"""`newswatch up` with its matcher stuck in a handler: Ctrl-C stops every process (services
in parallel, then the embedded broker) within one grace period plus the broker's stop; a
second Ctrl-C ends everything at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from newswatch.demo.feed_server import FeedServer
from newswatch.shared.broker import BROKER_STOP
from newswatch.shared.processes import free_port, spawn
from newswatch.shared.runtime import STALL_ENV
from newswatch.supervisor import KILL_MARGIN
from tests.support.procs import descendants, pid_alive
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
STALLED = "test stall point reached"


def _start_up(tmp_path: Path, feeds: FeedServer, grace: float) -> tuple[subprocess.Popen[bytes], Path]:
    ports = {n: free_port() for n in ("fetcher_port", "matcher_port", "notifier_port", "api_port")}
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "stop_grace": f"{grace:g}s",
        "http": ports,
        "fetcher": {"start_spread": "0s"},
        "feeds": [{"url": f"{feeds.base_url}/world.xml", "interval": "2s"}],
        "topics": [{"id": "nk-ukraine", "query": "North Korea Ukraine deployment"}],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
    env[STALL_ENV] = "matcher.process"  # only the matcher has this stall point
    log_path = tmp_path / "up.log"
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
                str(free_port()),
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
    return up, log_path


def _tree_when_stuck(up: subprocess.Popen[bytes], log_path: Path) -> set[int]:
    wait_for(
        lambda: STALLED in log_path.read_text(errors="replace"), 90, interval=0.2, what="the matcher stuck"
    )
    tree = descendants(up.pid)
    assert len(tree) >= 4, tree  # broker + three services
    return tree


def test_ctrl_c_stops_everything_within_one_grace_period_plus_the_broker(
    tmp_path: Path, feeds: FeedServer
) -> None:
    grace = 4.0
    up, log_path = _start_up(tmp_path, feeds, grace)
    try:
        tree = _tree_when_stuck(up, log_path) | {up.pid}
        sent = time.monotonic()
        os.kill(up.pid, signal.SIGINT)
        bound = grace + KILL_MARGIN + BROKER_STOP
        wait_for(
            lambda: not any(pid_alive(p) for p in tree), bound + 10, interval=0.05, what="every process gone"
        )
        took = time.monotonic() - sent
        code = up.wait(timeout=5)
    except BaseException:
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        if up.poll() is None:
            up.kill()
    print(f"\nup stopped in {took:.2f} s with its matcher stuck (bound {bound:g} s)")
    assert took <= bound and code == 0
    assert "ran out" in log_path.read_text(errors="replace")  # the matcher said why it exited


def test_a_second_ctrl_c_kills_everything_at_once(tmp_path: Path, feeds: FeedServer) -> None:
    grace = 60.0  # the second Ctrl-C must not wait for it
    up, log_path = _start_up(tmp_path, feeds, grace)
    try:
        tree = _tree_when_stuck(up, log_path) | {up.pid}
        os.kill(up.pid, signal.SIGINT)
        time.sleep(0.5)
        sent = time.monotonic()
        os.kill(up.pid, signal.SIGINT)
        wait_for(lambda: not any(pid_alive(p) for p in tree), 20, interval=0.05, what="every process gone")
        took = time.monotonic() - sent
        code = up.wait(timeout=5)
    except BaseException:
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        if up.poll() is None:
            up.kill()
    print(f"\nsecond Ctrl-C: everything gone in {took:.2f} s")
    assert code == 128 + signal.SIGINT
    assert took < grace / 4
