"""Runs the demo: feed server + alert printer + the supervised pipeline."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from newswatch.demo.feed_server import FeedServer, demo_entries
from newswatch.demo.receiver import WebhookReceiver, format_alert
from newswatch.shared.config import load_config
from newswatch.shared.processes import free_port
from newswatch.up import run_up

DEMO_QUERY = "North Korea Ukraine deployment"


def demo_config(feed_base: str, hook_url: str, state_dir: Path) -> dict[str, Any]:
    return {
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(state_dir),
        "http": {
            "fetcher_port": free_port(),
            "matcher_port": free_port(),
            "notifier_port": free_port(),
            "api_port": free_port(),
        },
        "fetcher": {"start_spread": "1s"},  # three feeds: no need to spread the first polls
        "feeds": [
            {"url": f"{feed_base}{path}", "interval": "30s"}
            for path in ("/world.xml", "/tech.xml", "/sport.xml")
        ],
        "topics": [{"id": "nk-ukraine", "query": DEMO_QUERY}],
        "subscriptions": [{"id": "demo", "topics": ["nk-ukraine"], "to": hook_url}],
    }


def run_demo(
    stop: threading.Event,
    workdir: Path,
    broker_port: int | None = None,
    out: TextIO = sys.stdout,
    on_force: Callable[[Callable[[], None]], None] | None = None,
) -> None:
    """Run until ``stop``; ``workdir`` is wiped first so every demo starts fresh."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    color = out.isatty()
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            out.write(text + "\n")
            out.flush()

    def on_alert(_headers: dict[str, str], body: dict[str, Any]) -> None:
        say("\n" + format_alert(body, color=color) + "\n")

    feeds = FeedServer().start()
    for path, (title, entries) in demo_entries(feeds.base_url, datetime.now(UTC)).items():
        feeds.set_feed(path, title, entries)
    receiver = WebhookReceiver(on_alert).start()
    config_path = workdir / "newswatch-demo.yaml"
    config_path.write_text(
        yaml.safe_dump(demo_config(feeds.base_url, receiver.url, workdir / "state"), sort_keys=False)
    )
    config = load_config(config_path)
    say(f"newswatch demo: feeds at {feeds.base_url}, alerts go to {receiver.url}")
    say(f"watching topic nk-ukraine: {DEMO_QUERY!r}")
    say(f"config: {config_path}   service logs: {workdir / 'logs'}")
    try:
        run_up(
            config,
            config_path,
            stop,
            broker_port=broker_port,
            log_dir=workdir / "logs",
            announce=say,
            on_force=on_force,
        )
    finally:
        receiver.stop()
        feeds.stop()
        say("newswatch demo stopped")
