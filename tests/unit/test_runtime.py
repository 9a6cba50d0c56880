"""Shutdown: the first stop signal starts a graceful stop bounded by the grace period; a
second one, or the grace running out, ends the process (here: a recorded exit)."""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from newswatch.shared.runtime import BACKSTOP_DELAY, HARD_EXIT, Shutdown, drain_budget
from tests.support.waiting import wait_for


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.done = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.done.set()


def test_first_request_sets_stop_and_arms_both_watchdogs() -> None:
    now = [100.0]
    exits, backstops = Exits(), list[float]()
    shutdown = Shutdown(30.0, clock=lambda: now[0], exit_now=exits, backstop=backstops.append)
    assert not shutdown.stop.is_set() and shutdown.remaining() == 30.0
    shutdown.request("SIGTERM")
    assert shutdown.stop.is_set()
    assert backstops == [30.0 + BACKSTOP_DELAY]
    now[0] += 12.5
    assert shutdown.remaining() == 17.5
    assert exits.codes == []


def test_the_watchdog_exits_when_the_grace_period_runs_out(caplog: pytest.LogCaptureFixture) -> None:
    exits = Exits()
    forced: list[str] = []
    shutdown = Shutdown(0.2, exit_now=exits, backstop=lambda _s: None)
    shutdown.on_force(lambda: forced.append("killed children"))
    caplog.set_level(logging.INFO)
    shutdown.request("SIGTERM")
    assert exits.done.wait(10)
    assert exits.codes == [HARD_EXIT] and forced == ["killed children"]
    record = next(r for r in caplog.records if r.msg.startswith("exiting without finishing"))
    assert "stop_grace (0.2 s) ran out" in getattr(record, "reason", "")
    assert "test_runtime.py" in getattr(record, "main_thread_at", "")  # where the main thread was


def test_a_second_signal_exits_at_once_with_its_status() -> None:
    exits = Exits()
    forced: list[int] = []
    shutdown = Shutdown(60.0, exit_now=exits, backstop=lambda _s: None)
    shutdown.on_force(lambda: forced.append(1))
    shutdown.request("SIGINT", signal.SIGINT)
    assert exits.codes == []
    shutdown.request("SIGINT", signal.SIGINT)
    assert exits.codes == [128 + signal.SIGINT] and forced == [1]


def test_a_failing_force_callback_does_not_prevent_the_exit() -> None:
    exits = Exits()
    shutdown = Shutdown(60.0, exit_now=exits, backstop=lambda _s: None)

    def broken() -> None:
        raise RuntimeError("child table gone")

    shutdown.on_force(broken)
    shutdown.request("SIGTERM")
    shutdown.request("SIGTERM")
    assert exits.codes == [128 + signal.SIGTERM]


def test_an_unbounded_shutdown_arms_no_watchdog() -> None:
    exits, backstops = Exits(), list[float]()
    shutdown = Shutdown(float("inf"), exit_now=exits, backstop=backstops.append)
    shutdown.request("SIGTERM")
    assert shutdown.stop.is_set() and backstops == [] and exits.codes == []


@pytest.mark.parametrize(("grace", "budget"), [(20.0, 15.0), (4.0, 3.0), (60.0, 55.0), (0.0, 0.0)])
def test_drain_budget_keeps_time_for_commit_and_close(grace: float, budget: float) -> None:
    assert drain_budget(grace) == budget


def test_install_routes_signals_to_request() -> None:
    exits = Exits()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    shutdown = Shutdown(60.0, exit_now=exits, backstop=lambda _s: None).install()
    try:
        signal.raise_signal(signal.SIGTERM)
        wait_for(shutdown.stop.is_set, 5, what="the stop flag")
        assert exits.codes == []
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
