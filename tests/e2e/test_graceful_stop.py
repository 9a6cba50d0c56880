"""SIGTERM each service in turn while items flow: each exits 0 within the grace period, and in
the end every item is published once and alerted once — nothing lost, nothing duplicated."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ITEMS
from newswatch.shared.processes import free_port
from tests.support.hooks import HookServer
from tests.support.kafka import read_json
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess, http_ok
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
FEEDS = 4
ITEMS_ADDED = 120
GRACE = 30.0  # Kubernetes' default terminationGracePeriodSeconds


def test_sigterm_each_service_in_turn_loses_and_duplicates_nothing(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    server, hook = FeedServer().start(), HookServer().start()
    for f in range(FEEDS):
        server.set_feed(f"/feed{f}.xml", f"Feed {f}", [])
    ports = {name: free_port() for name in ("fetcher", "matcher", "notifier")}
    config_path = write_config(
        tmp_path,
        stop_grace="10s",
        fetcher={"start_spread": "0s", "backfill_max_items": 1000},
        notifier={"timeout": "2s", "smtp": {"timeout": "2s"}},
        feeds=[{"url": f"{server.base_url}/feed{f}.xml", "interval": "1s"} for f in range(FEEDS)],
        topics=[{"id": "deploy", "query": "troops deployment"}],
        subscriptions=[{"id": "ops", "topics": ["deploy"], "to": hook.url}],
    )
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    procs = {
        name: ServiceProcess(
            name, [name, "--config", str(config_path), "--http-port", str(ports[name])], env, tmp_path
        ).start()
        for name in ("notifier", "matcher", "fetcher")
    }
    expected: set[str] = set()
    stop_adding = threading.Event()

    def add_items() -> None:
        for n in range(ITEMS_ADDED):  # bounded: one item every 100 ms
            if stop_adding.wait(0.1):
                return
            words = " ".join(f"w{n}x{i}" for i in range(8))  # distinct stories: no near-duplicates
            guid = f"item-{n}"
            server.add_entry(
                f"/feed{n % FEEDS}.xml",
                FeedEntry(
                    guid,
                    f"Troops deployment {words}",
                    f"Report {words}.",
                    f"{server.base_url}/s/{n}",
                    datetime.now(UTC),
                ),
            )
            expected.add(guid)

    adder = threading.Thread(target=add_items)
    exits: dict[str, tuple[int | None, float]] = {}
    try:

        def ready(name: str) -> bool:
            return http_ok(f"http://127.0.0.1:{ports[name]}/readyz")

        for name in procs:
            wait_for(lambda: ready(name), 60, what=f"{name} ready")  # noqa: B023 - waited for at once
        adder.start()
        for name in ("fetcher", "matcher", "notifier"):
            time.sleep(2.0)
            proc = procs[name]
            assert proc.proc is not None
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            code = proc.proc.wait(timeout=GRACE + 10)
            exits[name] = (code, time.monotonic() - started)
            proc.start()
            wait_for(lambda: ready(name), 60, what=f"{name} ready again")  # noqa: B023 - waited for at once
        adder.join(timeout=60)

        def alerted() -> set[str]:
            return {h.body["item"]["url"].rsplit("/", 1)[1] for h in hook.delivered()}

        wait_for(lambda: len(alerted()) >= len(expected), 120, interval=0.5, what="every item alerted")
    except BaseException:
        for proc in procs.values():
            print(f"--- {proc.name} ---\n{proc.log_tail()}")
        raise
    finally:
        stop_adding.set()
        for proc in procs.values():
            proc.stop()
        server.stop()
        hook.stop()
    published = Counter(i["guid"] for i in read_json(broker.bootstrap, ITEMS))
    alerts = Counter(h.headers["webhook-id"] for h in hook.delivered())
    print(
        f"\nSIGTERM exits (code, seconds): {exits}; items {len(expected)}, published {len(published)}, alerts {len(alerts)}"
    )
    assert all(code == 0 and seconds < GRACE for code, seconds in exits.values()), exits
    assert set(published) == expected and max(published.values()) == 1  # none lost, none twice
    assert len(alerts) == len(expected) and max(alerts.values()) == 1
