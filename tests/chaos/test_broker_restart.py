"""The broker restarts empty (the embedded broker keeps nothing) under the running pipeline:
the services recover without being restarted, and an item fetched afterwards is matched and
delivered (producers rebuilt, groups rejoined, topic definitions re-published by the notifier).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.processes import free_port
from tests.support.hooks import HookServer
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def test_pipeline_recovers_from_a_broker_that_lost_its_data(tmp_path: Path, broker: EmbeddedBroker) -> None:
    server, hook = FeedServer().start(), HookServer().start()
    now = datetime.now(UTC)
    server.set_feed(
        "/feed.xml",
        "Feed",
        [FeedEntry("a", "Troops deployment before", "Text.", f"{server.base_url}/a", now)],
    )
    config_path = write_config(
        tmp_path,
        fetcher={"start_spread": "0s"},
        notifier={"topics_check": "2s"},
        feeds=[{"url": f"{server.base_url}/feed.xml", "interval": "1s"}],
        topics=[{"id": "deploy", "query": "troops deployment"}],
        subscriptions=[{"id": "ops", "topics": ["deploy"], "to": hook.url}],
    )
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    procs = [
        ServiceProcess(
            name, [name, "--config", str(config_path), "--http-port", str(free_port())], env, tmp_path
        ).start()
        for name in ("notifier", "matcher", "fetcher")
    ]

    def titles() -> set[str]:
        return {h.body["item"]["title"] for h in hook.delivered()}

    try:
        wait_for(lambda: "Troops deployment before" in titles(), 90, what="the first alert")
        pids = [p.pid for p in procs]
        broker.stop()
        broker.start()  # same address, no topics, no offsets, no groups
        server.add_entry(
            "/feed.xml",
            FeedEntry("b", "Troops deployment after", "Text.", f"{server.base_url}/b", datetime.now(UTC)),
        )
        wait_for(
            lambda: "Troops deployment after" in titles(),
            180,
            interval=1.0,
            what="an alert after the broker restart",
        )
        assert [p.pid for p in procs] == pids and all(p.alive() for p in procs)  # nobody was restarted
        assert sorted(titles()) == ["Troops deployment after", "Troops deployment before"]
    except BaseException:
        for proc in procs:
            print(f"--- {proc.name} ---\n{proc.log_tail(25)}")
        raise
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
        hook.stop()
