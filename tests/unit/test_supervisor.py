from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from newswatch.supervisor import KILL_MARGIN, Child, Supervisor
from tests.support.procs import pid_alive
from tests.support.waiting import wait_for


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_crashed_child_is_restarted_with_growing_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    crashing = Child("crashy", py("import sys; sys.exit(3)"), {})
    steady = Child("steady", py("import time; time.sleep(60)"), {})
    sup = Supervisor([crashing, steady], log_dir=tmp_path, backoff=1.0, backoff_max=4.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO)
    sup.start()
    try:
        delays = []
        for _ in range(4):
            assert crashing.proc is not None
            crashing.proc.wait(timeout=10)
            sup.check()  # notices the exit, schedules the restart
            assert crashing.restart_at is not None
            delays.append(crashing.restart_at - now[0])
            now[0] = crashing.restart_at
            sup.check()  # restarts
        assert delays == [1.0, 2.0, 4.0, 4.0]
        assert crashing.restarts == 4
        assert steady.restarts == 0
        assert any(
            getattr(r, "exit_code", None) == 3
            for r in caplog.records
            if r.msg == "service exited; restarting"
        )
    finally:
        pids = [c.proc.pid for c in (crashing, steady) if c.proc]
        started = time.monotonic()
        sup.stop()
    assert time.monotonic() - started < 10
    assert not any(pid_alive(p) for p in pids)
    assert (tmp_path / "steady.log").exists()


def test_backoff_resets_after_a_stable_run(tmp_path: Path) -> None:
    now = [0.0]
    child = Child("flaky", py("import time; time.sleep(60)"), {})
    sup = Supervisor([child], log_dir=tmp_path, backoff=1.0, stable_after=30.0, clock=lambda: now[0])
    sup.start()
    try:
        child.failures_in_row = 3
        now[0] = 31.0
        sup.check()
        assert child.failures_in_row == 0
    finally:
        sup.stop()


def test_run_stops_children_when_the_stop_event_is_set(tmp_path: Path) -> None:
    child = Child("sleeper", py("import time; time.sleep(60)"), {})
    sup = Supervisor([child], log_dir=tmp_path)
    stop = threading.Event()
    thread = threading.Thread(target=sup.run, args=(stop, 0.05))
    thread.start()
    wait_for(lambda: child.proc is not None, 5, what="child started")
    stop.set()
    thread.join(timeout=5)
    sup.stop()
    assert child.proc is not None and child.proc.returncode is not None


DEAF = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"


def _started(children: list[Child], tmp_path: Path) -> None:
    for child in children:
        wait_for(
            lambda: "ready" in (tmp_path / f"{child.name}.log").read_text(),  # noqa: B023 - waited for at once
            30,
            what=f"{child.name} ignoring SIGTERM",
        )


def test_stop_shares_one_deadline_across_children_that_ignore_sigterm(tmp_path: Path) -> None:
    """Three children deaf to SIGTERM: all are killed after one grace period, not three."""
    grace = 1.0
    children = [Child(f"deaf{n}", py(DEAF), {}) for n in range(3)]
    sup = Supervisor(children, log_dir=tmp_path, grace=grace)
    sup.start()
    try:
        _started(children, tmp_path)
    finally:
        started = time.monotonic()
        sup.stop()
        took = time.monotonic() - started
    assert all(c.proc is not None and c.proc.returncode == -9 for c in children)
    assert took < 2 * (grace + KILL_MARGIN), took  # one shared deadline; sequential would be 3x


def test_kill_ends_every_child_at_once(tmp_path: Path) -> None:
    children = [Child(f"deaf{n}", py(DEAF), {}) for n in range(2)]
    sup = Supervisor(children, log_dir=tmp_path, grace=60.0)
    sup.start()
    try:
        _started(children, tmp_path)
        sup.kill()
        for child in children:
            assert child.proc is not None
            assert child.proc.wait(timeout=10) == -9
    finally:
        sup.stop()
