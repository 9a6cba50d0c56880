"""Service processes for end-to-end tests: started as real OS processes, always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx

from newswatch.shared.processes import spawn, terminate


@contextlib.contextmanager
def logs_on_failure(procs: Iterable[ServiceProcess]) -> Iterator[None]:
    """Stop every process at the end; when the block fails, print their last log lines first."""
    procs = list(procs)
    try:
        yield
    except BaseException:
        for proc in procs:
            print(f"--- {proc.name} log ---\n{proc.log_tail()}")
        raise
    finally:
        for proc in procs:
            proc.stop()


class ServiceProcess:
    """``python -m newswatch ARGS`` with its output in a log file (shown when a test fails)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = [sys.executable, "-m", "newswatch", *args]
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as out:
            self.proc = spawn(self.args, env=self.env, stdout=out, stderr=out)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        return terminate(self.proc, grace=grace)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


_PARENT = """
import sys, time
from newswatch.shared.processes import spawn
with open(sys.argv[1], "ab") as out:
    child = spawn(sys.argv[2:], stdout=out, stderr=out)
print(child.pid, flush=True)
time.sleep(600)
"""


class ParentedService(ServiceProcess):
    """A service started by an intermediate parent, as ``up`` starts it (same spawn, same
    parent-death signal), so a test can kill the parent and watch what the child does."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__(name, args, env, log_dir)
        self.parent: subprocess.Popen[bytes] | None = None
        self.child_pid = 0

    def start(self) -> ParentedService:
        self.parent = spawn(
            [sys.executable, "-c", _PARENT, str(self.log_path), *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
        )
        assert self.parent.stdout is not None
        self.child_pid = int(self.parent.stdout.readline() or b"0")
        assert self.child_pid, "the parent did not start the service"
        return self

    def alive(self) -> bool:
        return pid_alive(self.child_pid)

    def stop(self, grace: float = 20.0) -> int | None:
        """Kill both (a test's cleanup; the child is not ours to wait for)."""
        if pid_alive(self.child_pid):
            os.kill(self.child_pid, signal.SIGKILL)
        if self.parent is not None:
            terminate(self.parent, grace=1.0)
            if self.parent.stdout is not None:
                self.parent.stdout.close()
        return None


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def metric_value(metrics_url: str, name: str, having: str = "") -> float:
    """Sum of the samples of ``name`` on a /metrics page whose labels contain ``having``
    (e.g. ``outcome="dead"``; "" takes every sample); 0 when absent."""
    text = httpx.get(metrics_url, timeout=2.0).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            labels = line[len(name) :].split("}", 1)[0] if line.startswith(name + "{") else ""
            if having in labels:
                total += float(line.rsplit(" ", 1)[1])
    return total


def descendants(pid: int) -> set[int]:
    """All live descendant pids of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cli_token(config: Path, owner: str, *options: str, env: dict[str, str] | None = None) -> str:
    """A token made by `newswatch tokens create` (the CLI an operator runs), as it prints it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "newswatch",
            "tokens",
            "create",
            "--owner",
            owner,
            *options,
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.strip()
