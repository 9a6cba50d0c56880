"""The effective feed list: the config file's feeds, changed at runtime through ``newswatch.feeds``.

A definition on the topic overrides the config entry with the same URL (``active`` with
its interval, ``paused`` or ``removed``); URLs only on the topic are added. Each fetcher
replica polls only the feeds it owns (a stable hash of the URL modulo the replica count),
so replicas split the list without polling a feed twice.
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
    ) -> None:
        """``on_error`` is called for each undecodable definition (the service counts them)."""
        self._reader = TableReader(consumer, FEEDS)
        self._config = list(config_feeds)
        self._replica = replica
        self._replicas = replicas
        self.overrides: dict[str, FeedDefinition] = {}
        self._on_error = on_error

    def load(self, stop: threading.Event, timeout: float = 60.0) -> None:
        self._reader.assign(stop, timeout)
        self._reader.catch_up(stop, self._apply, timeout)

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
                self.overrides.pop(url, None)
                continue
            try:
                definition = decode(FeedDefinition, record.value)
            except ContractError as exc:
                if self._on_error is not None:
                    self._on_error()
                log.error("undecodable feed definition ignored", extra={"key": url, "error": str(exc)})
                continue
            self.overrides[definition.url] = definition
