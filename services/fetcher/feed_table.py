"""The effective feed list: the config file's feeds, changed at runtime through ``newswatch.feeds``.

A definition on the topic overrides the config entry with the same URL (``active`` with
its interval, ``paused`` or ``removed``); URLs only on the topic are added. Each fetcher
replica polls only the feeds it owns (a stable hash of the URL modulo the replica count),
so replicas split the list without polling a feed twice.

The fetcher's database keeps every definition (``state.DEFINITIONS``): the table starts
from the stored ones, a record on the topic replaces one only when it is as new or newer
(``updated_at``), and ``take_changes`` hands what the topic changed to the store.
``missing_on_topic`` names the stored definitions the topic did not have at load: a broker
that lost its data, which the fetcher publishes again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from newswatch.shared.config import FeedConfig
from newswatch.shared.contract import FEEDS, FeedDefinition, decode
from newswatch.shared.errors import ContractError
from newswatch.shared.table import TableReader

log = logging.getLogger(__name__)


def owns(url: str, replica: int, replicas: int) -> bool:
    """Whether replica ``replica`` of ``replicas`` polls ``url`` (stable across restarts)."""
    return int(hashlib.sha256(url.encode()).hexdigest()[:12], 16) % replicas == replica


def effective_feeds(
    config_feeds: Sequence[FeedConfig], overrides: dict[str, FeedDefinition]
) -> dict[str, FeedConfig]:
    feeds = {f.url: f for f in config_feeds}
    for url, definition in overrides.items():
        if definition.state == "active":
            feeds[url] = FeedConfig(url=url, interval=definition.interval)
        else:
            feeds.pop(url, None)
    return feeds


class FeedTable:
    def __init__(
        self,
        consumer: Any,
        config_feeds: Sequence[FeedConfig],
        replica: int = 0,
        replicas: int = 1,
        on_error: Callable[[], None] | None = None,
        stored: Sequence[FeedDefinition] = (),
    ) -> None:
        """``on_error`` is called for each undecodable definition (the service counts them);
        ``stored``: the definitions the database holds."""
        self._reader = TableReader(consumer, FEEDS)
        self._config = list(config_feeds)
        self._replica = replica
        self._replicas = replicas
        self.overrides: dict[str, FeedDefinition] = {d.url: d for d in stored}
        self._on_error = on_error
        self._changes: dict[str, FeedDefinition | None] = {}
        self._on_topic: set[str] = set()

    def load(self, stop: threading.Event, timeout: float = 60.0) -> None:
        self._reader.assign(stop, timeout)
        self._reader.catch_up(stop, self._apply, timeout)

    def missing_on_topic(self) -> list[FeedDefinition]:
        """Definitions held (stored, or newer than the topic's) that the topic did not carry
        at load: what to publish again."""
        return [d for url, d in sorted(self.overrides.items()) if url not in self._on_topic]

    def take_changes(self) -> dict[str, FeedDefinition | None]:
        """What the topic changed since the last call (None: the URL's definition was deleted)."""
        changes, self._changes = self._changes, {}
        return changes

    def poll(self) -> bool:
        """Apply runtime changes; True if any arrived."""
        before = dict(self.overrides)
        self._reader.poll(self._apply, 0)
        return before != self.overrides

    def mine(self) -> dict[str, FeedConfig]:
        """The feeds this replica polls."""
        return {
            url: feed
            for url, feed in effective_feeds(self._config, self.overrides).items()
            if owns(url, self._replica, self._replicas)
        }

    def close(self) -> None:
        self._reader.close()

    def _apply(self, records: list[Any]) -> None:
        for record in records:
            url = record.key.decode("utf-8", "replace") if record.key else ""
            if record.value is None:
                self._on_topic.discard(url)
                if self.overrides.pop(url, None) is not None:
                    self._changes[url] = None
                continue
            try:
                definition = decode(FeedDefinition, record.value)
            except ContractError as exc:
                if self._on_error is not None:
                    self._on_error()
                log.error("undecodable feed definition ignored", extra={"key": url, "error": str(exc)})
                continue
            held = self.overrides.get(definition.url)
            if held is not None and held.updated_at > definition.updated_at:
                self._on_topic.discard(definition.url)  # the store's is newer: publish it again
                continue
            self._on_topic.add(definition.url)
            self.overrides[definition.url] = definition
            self._changes[definition.url] = definition
