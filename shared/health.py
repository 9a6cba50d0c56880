"""Liveness and readiness as the services report them.

Liveness answers "is the main loop still turning" (a wedged process should be
restarted); readiness answers "is it connected to Kafka and doing its job" (take it out
of rotation, but do not kill it). Each check says why it failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Health:
    """Thread-safe health state, updated by the service and read by the HTTP server."""

    def __init__(self, stall_after: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stall_after = stall_after
        self._lock = threading.Lock()
        self._beat = clock()
        self._not_ready: str | None = "starting"

    def beat(self) -> None:
        """Called by the main loop on every turn."""
        with self._lock:
            self._beat = self._clock()

    def set_ready(self) -> None:
        with self._lock:
            self._not_ready = None

    def set_not_ready(self, reason: str) -> None:
        with self._lock:
            self._not_ready = reason

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            age = self._clock() - self._beat
        if age > self._stall_after:
            return False, f"main loop stalled for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        alive, why = self.alive()
        if not alive:
            return False, why
        with self._lock:
            reason = self._not_ready
        return (False, reason) if reason else (True, "ok")
