"""Runtime feed management with two fetcher replicas: add, pause, resume, import, export."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.fetcher.feed_table import owns
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ITEMS
from newswatch.shared.processes import free_port
from tests.support.kafka import read_json
from tests.support.procs import ServiceProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def entry(guid: str) -> FeedEntry:
    return FeedEntry(guid, f"Story {guid}", "Text.", f"http://127.0.0.1/s/{guid}", datetime.now(UTC))


def guids(bootstrap: str) -> Counter[str]:
    return Counter(i["guid"] for i in read_json(bootstrap, ITEMS))


def test_runtime_feed_changes_with_two_replicas(tmp_path: Path, broker: EmbeddedBroker) -> None:
    server = FeedServer().start()
    # The server's port is random, so are the owners of its URLs: pick a path prefix under which
    # both replicas own some of the six config feeds (1 in 32 ports would give one replica all).
    prefix = next(
        f"/s{salt}"
        for salt in range(100)
        if {owns(f"{server.base_url}/s{salt}/f{n}.xml", 0, 2) for n in range(6)} == {True, False}
    )
    urls = [f"{server.base_url}{prefix}/f{n}.xml" for n in range(8)]
    for n in range(8):
        server.set_feed(f"{prefix}/f{n}.xml", f"Feed {n}", [entry(f"f{n}-a")])
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "fetcher": {"start_spread": "0s", "replicas": 2},
        "feeds": [{"url": u, "interval": "1s"} for u in urls[:6]],  # f6 and f7 come later, at runtime
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    full_env = {**os.environ, **env}
    replicas = [
        ServiceProcess(
            f"fetcher{r}",
            ["fetcher", "--config", str(config_path), "--http-port", str(free_port())],
            {**env, "NEWSWATCH_FETCHER_REPLICA": str(r), "NEWSWATCH_STATE_DIR": str(tmp_path / f"state{r}")},
            tmp_path,
        ).start()
        for r in range(2)
    ]

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "newswatch", "feeds", *args, "--config", str(config_path)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        assert {owns(u, 0, 2) for u in urls[:6]} == {True, False}, "both replicas must own some feeds"
        wait_for(
            lambda: {f"f{n}-a" for n in range(6)} <= set(guids(broker.bootstrap)), 60, what="config feeds"
        )

        print(cli("add", urls[6], "--interval", "1s"))
        opml = tmp_path / "more.opml"
        opml.write_text(f'<opml version="2.0"><body><outline text="F7" xmlUrl="{urls[7]}"/></body></opml>')
        print(cli("import", str(opml), "--interval", "1s"))
        wait_for(lambda: {"f6-a", "f7-a"} <= set(guids(broker.bootstrap)), 60, what="runtime-added feeds")

        cli("pause", urls[0])
        time.sleep(2.5)  # the fetchers apply changes within a second; let in-flight polls finish
        server.add_entry(f"{prefix}/f0.xml", entry("f0-paused"))
        server.add_entry(f"{prefix}/f1.xml", entry("f1-barrier"))
        wait_for(lambda: "f1-barrier" in guids(broker.bootstrap), 60, what="the barrier item")
        time.sleep(3)  # f0 would have been polled three times by now
        assert "f0-paused" not in guids(broker.bootstrap)

        cli("resume", urls[0], "--interval", "1s")
        wait_for(lambda: "f0-paused" in guids(broker.bootstrap), 60, what="the paused feed to resume")

        listing = cli("list")
        assert f"active   runtime  1.0       {urls[6]}" in listing
        exported = cli("export")
        assert all(f'xmlUrl="{u}"' in exported for u in urls)
    except BaseException:
        for proc in replicas:
            print(f"--- {proc.name} ---\n{proc.log_tail()}")
        raise
    finally:
        for proc in replicas:
            proc.stop()
        server.stop()
    counts = guids(broker.bootstrap)
    assert all(n == 1 for n in counts.values()), (
        f"published more than once: {[g for g, n in counts.items() if n > 1]}"
    )
