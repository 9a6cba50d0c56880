"""Child processes that cannot outlive their parent.

``up`` and ``demo`` start the broker and the services as children. If the parent is
killed (even with SIGKILL), the kernel sends the child SIGTERM (PR_SET_PDEATHSIG): a
service then stops as on any SIGTERM, within ``stop_grace`` even when stuck (its
watchdog, ``shared/runtime``), so no orphan keeps a port, a CPU or a broker. Children run in their own session: a Ctrl-C in
the terminal reaches only the parent, which then stops the services before the broker
(otherwise the broker dies first and the services cannot commit or leave their group).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` as a child that is terminated when this process dies."""
    return subprocess.Popen(
        list(args),
        env=dict(env) if env is not None else None,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only; no threads touched
    )


def terminate(
    proc: subprocess.Popen[bytes], grace: float = 10.0, first: signal.Signals = signal.SIGTERM
) -> int | None:
    """Send ``first`` (SIGTERM), wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(first)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def python_module_command(*args: str) -> list[str]:
    """``python -m newswatch ARGS`` with this interpreter (works without PATH set up)."""
    return [sys.executable, "-m", "newswatch", *args]


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
