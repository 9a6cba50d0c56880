"""At most ``per_host`` fetches to one host at a time, whatever the global concurrency.

Thousands of feeds often live on a few hosts; without this, one news site would see the
fetcher's whole worker pool at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


class HostLimiter:
    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextlib.contextmanager
    def slot(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self._per_host))
        semaphore.acquire()
        try:
            yield
        finally:
            semaphore.release()
