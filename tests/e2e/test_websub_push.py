"""WebSub end to end: a feed advertising a hub is subscribed to after its first poll, and an item
the publisher pushes through the hub reaches the webhook receiver with no poll in between.

The three services run as OS processes on the real broker; the hub (tests/support/websub_hub)
follows the spec. The push-to-webhook latency of each pushed item is printed in the run's
summary ("measurements") and recorded in bench/README.md.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from newswatch.demo.feed_server import FeedEntry, FeedServer
from newswatch.demo.receiver import WebhookReceiver
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.processes import free_port
from tests.support.measured import MEASURED
from tests.support.procs import ServiceProcess, http_ok, logs_on_failure, metric_value
from tests.support.waiting import wait_for
from tests.support.websub_hub import SpecHub

pytestmark = pytest.mark.e2e

PATH = "/push.xml"
PUSHES = 5


#: Distinct stories (near-duplicates would be alerted once per story, by design).
STORIES = [
    ("Seoul: North Korean troops deployed to Ukraine front", "Intelligence officials confirmed the move."),
    ("Kyiv reports North Korea artillery deployment in Ukraine", "Shells of North Korean make were found."),
    ("Pyongyang engineers join Russian units in Ukraine", "North Korea sent a deployment of sappers."),
    (
        "NATO weighs response as North Korea expands Ukraine role",
        "Allies discussed the deployment in Brussels.",
    ),
    ("Satellite images show North Korea loading ships for Ukraine", "Analysts expect a further deployment."),
    (
        "UN panel documents North Korea missiles used in Ukraine",
        "The report details the deployment timeline.",
    ),
]


def _entry(server: FeedServer, n: int) -> FeedEntry:
    title, summary = STORIES[n]
    return FeedEntry(f"push-{n}", title, summary, f"{server.base_url}/world/push-{n}", datetime.now(UTC))


def test_a_pushed_item_reaches_the_receiver_with_no_poll(tmp_path: Path, broker: EmbeddedBroker) -> None:
    lock = threading.Lock()
    arrived: dict[str, float] = {}

    def record(_headers: dict[str, str], body: dict[str, Any]) -> None:
        with lock:
            arrived.setdefault(body["item"]["title"], time.monotonic())

    receiver = WebhookReceiver(record).start()
    feeds = FeedServer().start()
    hub = SpecHub()
    feeds.set_feed(PATH, "Push news", [_entry(feeds, 0)])
    feeds.advertise_hub(PATH, hub.url)
    topic = f"{feeds.base_url}{PATH}"
    ports = {name: free_port() for name in ("fetcher", "matcher", "notifier")}
    config = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "http": {"api_port": 0},
        "fetcher": {"start_spread": "0s", "websub": {"public_url": f"http://127.0.0.1:{ports['fetcher']}"}},
        "feeds": [{"url": topic, "interval": "1h"}],
        "topics": [{"id": "nk-ukraine", "query": "North Korea Ukraine deployment"}],
        "subscriptions": [{"id": "ops", "topics": ["nk-ukraine"], "to": receiver.url}],
    }
    config_path = tmp_path / "newswatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap, "NEWSWATCH_LOG_LEVEL": "INFO"}
    procs = {
        name: ServiceProcess(
            name, [name, "--config", str(config_path), "--http-port", str(ports[name])], env, tmp_path
        ).start()
        for name in ("fetcher", "matcher", "notifier")
    }
    fetcher_metrics = f"http://127.0.0.1:{ports['fetcher']}/metrics"
    try:
        with logs_on_failure(procs.values()):
            # The first poll publishes item 0 (its alert shows the pipeline is warm) and finds the hub.
            wait_for(lambda: _entry(feeds, 0).title in arrived, 120, what="the polled item's alert")
            wait_for(lambda: hub.subscribers(topic), 30, what="a verified subscription at the hub")
            assert (
                metric_value(fetcher_metrics, "newswatch_fetcher_websub_subscriptions", 'state="verified"')
                == 1
            )
            for name, port in ports.items():
                wait_for(partial(http_ok, f"http://127.0.0.1:{port}/readyz"), 30, what=f"{name} ready")
            polls = feeds.requests
            latencies = []
            for n in range(1, PUSHES + 1):
                entry = _entry(feeds, n)
                feeds.add_entry(PATH, entry)
                body = feeds.render(PATH)
                assert body is not None
                pushed = time.monotonic()
                assert hub.publish(topic, body) == [204]
                wait_for(partial(arrived.__contains__, entry.title), 30, what=f"pushed item {n}'s alert")
                latencies.append(arrived[entry.title] - pushed)
            assert feeds.requests == polls, "the feed was polled while push was live"
            processed = metric_value(
                fetcher_metrics, "newswatch_fetcher_websub_pushes_total", 'outcome="processed"'
            )
            assert processed == PUSHES
            assert len(arrived) == PUSHES + 1  # each item alerted once
            MEASURED.append(
                f"WebSub push → webhook ({PUSHES} items, 3 services, embedded broker): "
                + ", ".join(f"{s * 1000:.0f} ms" for s in latencies)
                + f"; median {sorted(latencies)[PUSHES // 2] * 1000:.0f} ms"
            )
    finally:
        receiver.stop()
        feeds.stop()
        hub.stop()
