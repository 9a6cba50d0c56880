"""Keeps the service processes of ``newswatch up`` running.

Each service is a separate OS process, as in a container deployment. A child that exits
while we are not stopping is logged and restarted with exponential backoff (reset once
it has run for a while); on stop every child gets SIGTERM at once, then SIGKILL after the
grace period, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.processes import spawn

log = logging.getLogger(__name__)
#: After the grace period, how long the supervisor waits before SIGKILL: the child's own
#: watchdog ends it at the grace period, this is the backstop.
KILL_MARGIN = 1.0


@dataclass
class Child:
    name: str
    args: Sequence[str]
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_row: int = 0
    restart_at: float | None = None
    output: IO[Any] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        log_dir: Path | None = None,
        broker: EmbeddedBroker | None = None,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        grace: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = list(children)
        self._log_dir = log_dir
        self._broker = broker
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._stable_after = stable_after
        self._grace = grace
        self._clock = clock

    def _start(self, child: Child) -> None:
        if self._log_dir is not None and child.output is None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            child.output = (self._log_dir / f"{child.name}.log").open("ab")
        child.proc = spawn(child.args, env=child.env, stdout=child.output, stderr=child.output)
        child.started_at = self._clock()
        child.restart_at = None
        log.info("service started", extra={"child": child.name, "pid": child.proc.pid})

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def check(self) -> None:
        """One supervision pass: notice exits, schedule and perform restarts."""
        now = self._clock()
        if self._broker is not None and not self._broker.running():
            log.error("embedded broker exited; restarting it (its data is lost)")
            self._broker.start()
        for child in self.children:
            if child.proc is None:
                continue
            code = child.proc.poll()
            if code is None:
                if now - child.started_at > self._stable_after:
                    child.failures_in_row = 0
                continue
            if child.restart_at is None:
                delay = min(self._backoff * 2**child.failures_in_row, self._backoff_max)
                child.failures_in_row += 1
                child.restart_at = now + delay
                log.error(
                    "service exited; restarting",
                    extra={
                        "child": child.name,
                        "exit_code": code,
                        "restart_in_s": delay,
                        "restarts": child.restarts,
                    },
                )
            elif now >= child.restart_at:
                child.restarts += 1
                self._start(child)

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        self.start()
        while not stop.wait(interval):
            self.check()

    def stop(self) -> None:
        """SIGTERM every child at once; each exits within the grace period by itself (its own
        watchdog); one shared deadline, ``grace`` + ``KILL_MARGIN``, after which stragglers
        get SIGKILL. The whole stop takes one grace period, not one per child."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.terminate()
        deadline = self._clock() + self._grace + KILL_MARGIN
        for child in self.children:
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=max(0.0, deadline - self._clock()))
                except subprocess.TimeoutExpired:
                    log.error("service did not stop in time; killing it", extra={"child": child.name})
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
                    child.proc.wait(timeout=5)
                log.info("service stopped", extra={"child": child.name, "exit_code": child.proc.returncode})
            if child.output is not None:
                child.output.close()
                child.output = None

    def kill(self) -> None:
        """SIGKILL every child now (a second Ctrl-C): their in-flight work stays uncommitted."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
