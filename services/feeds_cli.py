"""``newswatch feeds``: change the feed list of the running fetchers, import and export OPML.

Changes are published to ``newswatch.feeds``; every fetcher applies them within a second,
without a restart. The config file's feeds stay the base list: a change overrides the
entry with the same URL, and a URL only known from the topic is an addition.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from newswatch.fetcher.feed_table import FeedTable, effective_feeds
from newswatch.fetcher.opml import OpmlFeed, read_opml, write_opml
from newswatch.shared.config import Config, FeedConfig, check_http_url
from newswatch.shared.contract import ALL_TOPICS, FEEDS, FeedDefinition, encode
from newswatch.shared.errors import ConfigError
from newswatch.shared.kafka_client import ensure_topics, make_consumer, publish_once
from newswatch.shared.kafka_io import Record

State = Literal["active", "paused", "removed"]


def publish_feeds(
    bootstrap: str, config: Config, urls: Sequence[tuple[str, str]], state: State, interval: float | None
) -> None:
    """Publish one definition per (url, title) and wait for the acknowledgements."""
    for url, _ in urls:
        try:
            check_http_url(url)
        except ValueError as exc:
            raise ConfigError(f"feed {url!r}: {exc}") from exc
    now = datetime.now(UTC)
    records = [
        Record(
            FEEDS,
            url,
            encode(FeedDefinition(url=url, state=state, interval=interval, title=title, updated_at=now)),
        )
        for url, title in urls
    ]
    publish_once(bootstrap, config.kafka, records, "newswatch-feeds")


def current_feeds(bootstrap: str, config: Config) -> tuple[dict[str, FeedConfig], dict[str, FeedDefinition]]:
    """The effective feed list (config + runtime changes) and the runtime definitions."""
    ensure_topics(bootstrap, config.kafka, ALL_TOPICS)
    table = FeedTable(make_consumer(bootstrap, config.kafka, None, "newswatch-feeds-cli"), config.feeds)
    try:
        table.load(threading.Event(), timeout=30)
    finally:
        table.close()
    return effective_feeds(config.feeds, table.overrides), table.overrides


def import_opml(bootstrap: str, config: Config, path: Path, interval: float | None) -> int:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    feeds = read_opml(data, str(path))
    if not feeds:
        raise ConfigError(f"{path}: no outline with an xmlUrl")
    publish_feeds(bootstrap, config, [(f.url, f.title) for f in feeds], "active", interval)
    return len(feeds)


def export_opml(bootstrap: str, config: Config) -> str:
    feeds, overrides = current_feeds(bootstrap, config)
    return write_opml(
        OpmlFeed(url, overrides[url].title if url in overrides else "") for url in sorted(feeds)
    )
