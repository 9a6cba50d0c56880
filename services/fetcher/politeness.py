"""At most ``per_host`` fetches to one host at a time, whatever the global concurrency.

Thousands of feeds often live on a few hosts; without this, one news site would see the
fetcher's whole concurrency at once. Used from the fetcher's event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class HostLimiter:
    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        semaphore = self._slots.setdefault(host, asyncio.Semaphore(self._per_host))
        self._users[host] = self._users.get(host, 0) + 1
        try:
            async with semaphore:
                yield
        finally:
            self._users[host] -= 1
            if not self._users[host]:  # forget idle hosts: 10,000 feeds, thousands of hosts
                del self._users[host], self._slots[host]
