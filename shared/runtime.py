"""Process-level plumbing shared by every service: how a process stops.

A stop signal (SIGTERM, SIGINT, or the parent-death signal a supervised child gets when
``up`` dies) starts a graceful stop: the service finishes its current work, commits and
leaves its consumer group. Work can hang (a stuck handler, a dead broker, a slow
peer), and Kubernetes or compose would SIGKILL the process after their own grace
period anyway; so a watchdog armed by the first signal ends the process when
``stop_grace`` runs out, logging where the main thread was. Records in flight stay
uncommitted and are redelivered: at-least-once is what makes a hard exit safe. A second
signal ends the process at once.

The watchdog is a Python thread and needs the GIL; behind it, ``faulthandler``'s C
watchdog (no GIL) dumps every thread's stack and exits half a second later, so a C call
that never releases the GIL cannot keep the process alive either.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

#: Exit status after the grace period ran out (timeout(1)'s convention).
HARD_EXIT = 124
#: The C watchdog fires this long after the Python one.
BACKSTOP_DELAY = 0.5
#: Test hook: a service whose environment names one of its stall points stays busy there.
STALL_ENV = "NEWSWATCH_TEST_STALL"
_STACK_FRAMES = 8


def drain_budget(grace: float) -> float:
    """How much of ``grace`` a service may spend finishing work in flight; the rest is kept
    for committing, closing clients and leaving the consumer group."""
    return max(0.0, grace - min(5.0, grace / 4))


def _faulthandler_backstop(seconds: float) -> None:
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)


class Shutdown:
    """Turns stop signals into ``stop`` (an Event the service's loops watch) and bounds the
    time from the first signal to the process's end by ``grace`` seconds."""

    def __init__(
        self,
        grace: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        exit_now: Callable[[int], None] = os._exit,
        backstop: Callable[[float], None] = _faulthandler_backstop,
    ) -> None:
        self.stop = threading.Event()
        self.grace = grace
        self._clock = clock
        self._exit = exit_now
        self._backstop = backstop
        self._lock = threading.Lock()
        self._requested_at: float | None = None
        self._forced: list[Callable[[], None]] = []
        self._main = threading.main_thread()

    def install(self) -> Shutdown:
        """Handle SIGTERM and SIGINT in this (the main) thread."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def on_force(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` before a hard exit (``up`` kills its children there)."""
        self._forced.append(callback)

    def remaining(self) -> float:
        """Seconds left before the hard exit (``grace`` while no stop was requested)."""
        with self._lock:
            if self._requested_at is None:
                return self.grace
            return max(0.0, self._requested_at + self.grace - self._clock())

    def request(self, reason: str, signum: int = signal.SIGTERM) -> None:
        """Start a graceful stop, or end the process at once (status 128 + ``signum``) if one
        was already started."""
        with self._lock:
            first = self._requested_at is None
            if first:
                self._requested_at = self._clock()
        if not first:
            self._hard_exit(f"{reason} again while stopping", 128 + signum)
            return
        log.info("stopping", extra={"reason": reason, "stop_grace_s": self.grace})
        self.stop.set()
        if math.isfinite(self.grace):
            self._backstop(self.grace + BACKSTOP_DELAY)
            threading.Thread(target=self._watch, name="stop-watchdog", daemon=True).start()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name, signum)

    def _watch(self) -> None:
        while (left := self.remaining()) > 0:
            time.sleep(min(left, 0.1))
        self._hard_exit(f"stop_grace ({self.grace:g} s) ran out", HARD_EXIT)

    def _hard_exit(self, why: str, code: int) -> None:
        try:
            frame = sys._current_frames().get(self._main.ident or -1)
            where = "".join(traceback.format_stack(frame, limit=_STACK_FRAMES)) if frame is not None else ""
            log.error(
                "exiting without finishing: records in flight stay uncommitted and are redelivered",
                extra={"reason": why, "exit_code": code, "main_thread_at": where},
            )
            for callback in self._forced:
                try:
                    callback()
                except Exception:
                    log.exception("a stop callback failed")
            for handler in logging.getLogger().handlers:
                with contextlib.suppress(Exception):  # a closed stream must not hold up the exit
                    handler.flush()
        finally:
            self._exit(code)


def stall_point(name: str) -> None:
    """A hook only tests enable: when ``NEWSWATCH_TEST_STALL`` names this point, the calling
    thread stays busy here, deaf to the stop flag, like a handler stuck in its work. It is
    how the tests show that a service still exits within its grace period."""
    if os.environ.get(STALL_ENV) != name:
        return
    log.warning("test stall point reached; busy until the process is stopped", extra={"point": name})
    while True:
        time.sleep(0.01)


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, for commands with nothing to drain (a second
    signal ends them at once)."""
    return Shutdown(grace=float("inf")).install().stop
