"""kill -9 the fetcher process while it polls, restart it: no item lost, none published twice.

The fetcher remembers an item only after Kafka acknowledged it (nothing lost), and journals
each batch before sending it; a restart settles the journal from newswatch.items, so the
items of the polls in flight at the kill are not sent again.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ITEMS
from newswatch.shared.processes import free_port
from tests.support.kafka import read_json
from tests.support.procs import ServiceProcess, http_ok, metric_value
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
FEEDS = 20
KILLS = 3


def test_kill_9_mid_poll_loses_nothing(tmp_path: Path, broker: EmbeddedBroker) -> None:
    rng = random.Random(7)
    server = FeedServer().start()
    expected: set[str] = set()
    now = datetime.now(UTC)
    for f in range(FEEDS):
        entries = [
            FeedEntry(
                f"f{f}-i{i}",
                f"Feed {f} item {i}",
                "Text.",
                f"{server.base_url}/s/{f}/{i}",
                now - timedelta(minutes=i),
            )
            for i in range(5)
        ]
        server.set_feed(f"/feed{f}.xml", f"Feed {f}", entries)
        expected.update(e.guid for e in entries)
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "fetcher": {"concurrency": 8, "start_spread": "0s", "backfill_max_items": 1000},
        "feeds": [{"url": f"{server.base_url}/feed{f}.xml", "interval": "1s"} for f in range(FEEDS)],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    args = ["fetcher", "--config", str(config_path), "--http-port", str(free_port())]
    stop_adding = threading.Event()

    def add_items() -> None:
        for n in range(400):  # bounded: at most 400 items, one every 25 ms
            if stop_adding.wait(0.025):
                return
            f = rng.randrange(FEEDS)
            guid = f"f{f}-new{n}"
            server.add_entry(
                f"/feed{f}.xml",
                FeedEntry(guid, f"Breaking {n}", "Text.", f"{server.base_url}/n/{n}", datetime.now(UTC)),
            )
            expected.add(guid)

    adder = threading.Thread(target=add_items)
    fetcher = ServiceProcess("fetcher", args, env, tmp_path).start()
    adder.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.5, 3.0))
            os.kill(fetcher.pid, signal.SIGKILL)
            assert fetcher.proc is not None
            fetcher.proc.wait(timeout=10)
            fetcher.start()
        stop_adding.set()
        adder.join(timeout=30)

        def all_published() -> bool:
            guids = {i["guid"] for i in read_json(broker.bootstrap, ITEMS)}
            return expected <= guids

        wait_for(all_published, 90, interval=1.0, what="every item to be published")
    except BaseException:
        print(fetcher.log_tail())
        raise
    finally:
        stop_adding.set()
        fetcher.stop()
        server.stop()
    counts = Counter((i["guid"], i["revision"]) for i in read_json(broker.bootstrap, ITEMS))
    duplicates = sum(n - 1 for n in counts.values())
    missing = expected - {guid for guid, _ in counts}
    print(
        f"\nkill -9 x{KILLS}: items expected {len(expected)}, published {len(counts)}, "
        f"missing {len(missing)}, published twice {duplicates}"
    )
    assert not missing
    assert duplicates == 0


def test_kill_between_ack_and_seen_write_publishes_nothing_twice(
    tmp_path: Path, broker: EmbeddedBroker, postgres_url: str
) -> None:
    """The exact window a random kill rarely hits, made certain by a table lock.

    While the test holds an EXCLUSIVE lock on ``fetcher_seen`` (reads pass, writes wait),
    the fetcher journals and publishes a new item, then blocks writing it as seen; it is
    killed there. Without the journal the restarted fetcher would publish the item again.
    """
    server = FeedServer().start()
    path = "/feed.xml"
    now = datetime.now(UTC)
    server.set_feed(path, "Feed", [FeedEntry("first", "First", "Text.", f"{server.base_url}/s/first", now)])
    port = free_port()
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "database_url": postgres_url,
        "fetcher": {"start_spread": "0s"},
        "feeds": [{"url": f"{server.base_url}{path}", "interval": "1s"}],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    fetcher = ServiceProcess(
        "fetcher", ["fetcher", "--config", str(config_path), "--http-port", str(port)], env, tmp_path
    )
    engine = create_engine(postgres_url)

    def published(guid: str) -> bool:
        return guid in {i["guid"] for i in read_json(broker.bootstrap, ITEMS)}

    def add(guid: str) -> None:
        server.add_entry(
            path, FeedEntry(guid, guid.title(), "Text.", f"{server.base_url}/s/{guid}", datetime.now(UTC))
        )

    try:
        fetcher.start()
        wait_for(lambda: published("first"), 60, interval=0.5, what="the first poll's item")
        with engine.connect() as lock:
            lock.execute(text("LOCK TABLE fetcher_seen IN EXCLUSIVE MODE"))
            add("second")
            wait_for(
                lambda: published("second"), 30, interval=0.3, what="the item sent while its seen-write waits"
            )
            pending = lock.execute(text("SELECT count(*) FROM fetcher_pending")).scalar_one()
            assert pending >= 1  # journaled, sent, not yet remembered
            os.kill(fetcher.pid, signal.SIGKILL)
            assert fetcher.proc is not None
            fetcher.proc.wait(timeout=10)
            lock.rollback()
        fetcher.start()
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, what="the restarted fetcher to be ready"
        )
        add("third")
        wait_for(lambda: published("third"), 60, interval=0.5, what="an item polled after the restart")
        settled = metric_value(f"http://127.0.0.1:{port}/metrics", "newswatch_fetcher_journal_items_total")
    except BaseException:
        print(fetcher.log_tail())
        raise
    finally:
        fetcher.stop()
        server.stop()
        engine.dispose()
    counts = Counter(i["guid"] for i in read_json(broker.bootstrap, ITEMS))
    print(
        f"\nkill -9 between ack and seen-write: published {dict(counts)}, journal items settled {settled:.0f}"
    )
    assert counts == {"first": 1, "second": 1, "third": 1}
    assert settled >= 1
