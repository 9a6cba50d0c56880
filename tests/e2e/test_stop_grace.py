"""Stop means stop: a service stuck in its work (the stall hook holds its handler busy and
deaf to the stop flag) still exits within ``stop_grace`` + 1 s of SIGTERM, and within the
same bound when its parent is SIGKILLed; after a restart every item is alerted exactly
once. Each service in turn is the stuck one, inside the whole pipeline."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ITEMS
from newswatch.shared.processes import free_port
from newswatch.shared.runtime import HARD_EXIT, STALL_ENV
from tests.support.hooks import HookServer
from tests.support.kafka import read_json
from tests.support.pipeline import write_config
from tests.support.procs import ParentedService, ServiceProcess, pid_alive
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
GRACE = 3.0
BOUND = GRACE + 1.0  # the acceptance bound: stop_grace + 1 s
STALLED = "test stall point reached"
ITEM_COUNT = 5
SERVICES = ("notifier", "matcher", "fetcher")  # start order: topics reach Kafka first


def _stalls(proc: ServiceProcess) -> int:
    return proc.log_path.read_text(errors="replace").count(STALLED) if proc.log_path.exists() else 0


@pytest.mark.parametrize("stuck", ["fetcher", "matcher", "notifier"])
def test_a_stuck_service_exits_within_its_grace_and_loses_nothing(
    tmp_path: Path, broker: EmbeddedBroker, stuck: str
) -> None:
    feeds, hook = FeedServer().start(), HookServer().start()
    now = datetime.now(UTC)
    entries = []
    for n in range(ITEM_COUNT):
        words = " ".join(f"w{n}x{i}" for i in range(8))  # distinct stories: no near-duplicates
        entries.append(
            FeedEntry(
                f"story-{n}", f"Troops deployment {words}", f"Report {words}.", f"{feeds.base_url}/s/{n}", now
            )
        )
    feeds.set_feed("/world.xml", "World", entries)
    expected = Counter({f"story-{n}": 1 for n in range(ITEM_COUNT)})
    config = write_config(
        tmp_path,
        stop_grace=f"{GRACE:g}s",
        fetcher={"start_spread": "0s"},
        feeds=[{"url": f"{feeds.base_url}/world.xml", "interval": "2s"}],
        topics=[{"id": "deploy", "query": "troops deployment"}],
        subscriptions=[{"id": "ops", "topics": ["deploy"], "to": hook.url}],
    )
    base_env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}

    def args(name: str) -> list[str]:
        return [name, "--config", str(config), "--http-port", str(free_port())]

    procs: dict[str, ServiceProcess] = {}
    parented: ParentedService | None = None
    try:
        for name in SERVICES:
            env = {**base_env, STALL_ENV: f"{stuck}.process"} if name == stuck else base_env
            procs[name] = ServiceProcess(name, args(name), env, tmp_path).start()
            if name == "notifier":
                wait_for(
                    lambda: "topics re-published" in procs["notifier"].log_path.read_text(),
                    60,
                    what="the notifier's topics on Kafka",
                )
        target = procs[stuck]
        wait_for(lambda: _stalls(target) >= 1, 90, interval=0.2, what=f"{stuck} stuck in its handler")

        # 1. SIGTERM while stuck: a hard exit at stop_grace, saying why.
        assert target.proc is not None
        sent = time.monotonic()
        target.proc.send_signal(signal.SIGTERM)
        code = target.proc.wait(timeout=BOUND + 10)
        sigterm_took = time.monotonic() - sent
        log = target.log_path.read_text()
        assert code == HARD_EXIT, log[-3000:]
        assert f"stop_grace ({GRACE:g} s) ran out" in log and "main_thread_at" in log

        # 2. Stuck again (the records were not committed), then its parent dies.
        parented = ParentedService(stuck, args(stuck), target.env, tmp_path).start()
        wait_for(lambda: _stalls(target) >= 2, 90, interval=0.2, what=f"{stuck} stuck again")
        assert parented.parent is not None
        parented.parent.kill()
        killed = time.monotonic()
        wait_for(lambda: not pid_alive(parented.child_pid), BOUND + 10, interval=0.05, what="no orphan")
        orphan_took = time.monotonic() - killed

        # 3. A clean restart: every item alerted exactly once.
        procs[stuck] = ServiceProcess(stuck, args(stuck), base_env, tmp_path).start()
        wait_for(lambda: len(hook.delivered()) >= ITEM_COUNT, 120, interval=0.3, what="every alert")
        time.sleep(3)  # a duplicate would arrive meanwhile
    except BaseException:
        for proc in procs.values():
            print(f"--- {proc.name} ---\n{proc.log_tail(60)}")
        raise
    finally:
        for proc in procs.values():
            proc.stop()
        if parented is not None:
            parented.stop()
        feeds.stop()
        hook.stop()
    print(f"\n{stuck}: SIGTERM to exit {sigterm_took:.2f} s, parent killed to exit {orphan_took:.2f} s")
    assert sigterm_took <= BOUND and orphan_took <= BOUND
    published = Counter(i["guid"] for i in read_json(broker.bootstrap, ITEMS))
    alerted = Counter("story-" + h.body["item"]["url"].rsplit("/", 1)[1] for h in hook.delivered())
    assert published == expected and alerted == expected, (published, alerted)
