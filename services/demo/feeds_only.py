"""The demo's feed server and alert printer on their own, for a containerized pipeline
(``newswatch demo-feeds``; the compose file's ``demo`` profile): the fetcher polls these
feeds over the network and the notifier POSTs its alerts back here to be printed."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

from newswatch.demo.feed_server import FeedServer, demo_entries
from newswatch.demo.receiver import WebhookReceiver, format_alert, format_operator_alert, is_alertmanager


def serve_demo_feeds(
    stop: threading.Event,
    host: str,
    feed_port: int,
    hook_port: int,
    public_url: str | None,
    out: TextIO = sys.stdout,
    started: threading.Event | None = None,
) -> None:
    """Serves /world.xml, /tech.xml, /sport.xml and prints each alert POSTed to /hook: the
    notifier's, and the compose stack's Alertmanager notifications (operator alerts)."""
    lock = threading.Lock()

    def on_alert(_headers: dict[str, str], body: dict[str, Any]) -> None:
        with lock:
            text = format_operator_alert(body) if is_alertmanager(body) else format_alert(body)
            out.write("\n" + text + "\n")
            out.flush()

    feeds = FeedServer(host, feed_port).start()
    base = (public_url or feeds.base_url).rstrip("/")
    for path, (title, entries) in demo_entries(base, datetime.now(UTC)).items():
        feeds.set_feed(path, title, entries)
    receiver = WebhookReceiver(on_alert, host=host, port=hook_port).start()
    out.write(f"demo feeds at {base}/world.xml, /tech.xml, /sport.xml; alerts to POST {receiver.url}\n")
    out.flush()
    if started is not None:
        started.set()
    try:
        stop.wait()
    finally:
        receiver.stop()
        feeds.stop()
