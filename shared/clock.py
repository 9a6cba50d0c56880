"""The one clock type every service reads time through.

Services need two kinds of time: wall-clock time (epoch seconds, an aware UTC datetime) for
what is stored or shown, and a monotonic time for intervals and deadlines, which must not
jump when the wall clock is set. Code takes a ``Clock`` so a test can move both at will
(``ManualClock``) and retries, digests, leases and schedules happen when the test says.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock time, epoch seconds."""

    def now(self) -> datetime:
        """Wall-clock time as an aware UTC datetime."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals and deadlines)."""


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM = SystemClock()


class ManualClock:
    """A clock that moves only when told: both its readings advance together."""

    def __init__(self, start: datetime | float) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        return self.time()

    def __call__(self) -> float:
        return self.time()

    def set(self, moment: datetime | float) -> None:
        with self._lock:
            self._now = moment.timestamp() if isinstance(moment, datetime) else float(moment)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    @property
    def datetime(self) -> datetime:
        return self.now()
