"""``newswatch up``: the whole pipeline on one machine, supervised.

Starts the embedded broker unless a bootstrap address is configured, applies the config
file's topics, then runs fetcher, matcher and notifier as separate child processes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from newswatch.apply import apply_topics, bootstrap_file
from newswatch.shared.broker import BROKER_STOP, EmbeddedBroker
from newswatch.shared.config import Config
from newswatch.shared.processes import child_env, free_port, port_open, python_module_command
from newswatch.supervisor import KILL_MARGIN, Child, Supervisor

log = logging.getLogger(__name__)
SERVICES = ("fetcher", "matcher", "notifier")
DEFAULT_BROKER_PORT = 9092


def up_grace(config: Config) -> float:
    """How long ``up`` may take to stop: its services' grace (they stop in parallel, each
    bounded by ``stop_grace``), the supervisor's SIGKILL margin, then the broker's stop."""
    return config.stop_grace + KILL_MARGIN + BROKER_STOP + 1.0


def pick_broker_port(requested: int | None) -> int:
    """``requested``, else 9092 when free, else any free port."""
    if requested:
        return requested
    return DEFAULT_BROKER_PORT if not port_open("127.0.0.1", DEFAULT_BROKER_PORT, 0.2) else free_port()


def run_up(
    config: Config,
    config_path: Path | None,
    stop: threading.Event,
    broker_port: int | None = None,
    log_dir: Path | None = None,
    announce: Callable[[str], None] = print,
    extra_env: dict[str, str] | None = None,
    on_force: Callable[[Callable[[], None]], None] | None = None,
) -> None:
    """Run until ``stop`` is set, then stop every child (in parallel) and the broker.
    ``on_force`` registers what a forced stop (a second Ctrl-C) runs: kill them all now."""
    broker = None
    marker = bootstrap_file(config.state_dir)
    supervisor: Supervisor | None = None
    try:
        bootstrap = config.kafka.bootstrap
        if bootstrap:
            announce(f"using Kafka at {bootstrap}")
        else:
            broker_log = None
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                broker_log = (log_dir / "broker.log").open("ab")
            broker = EmbeddedBroker(pick_broker_port(broker_port), log_to=broker_log)
            if on_force is not None:
                on_force(broker.kill)
            broker.start()
            bootstrap = broker.bootstrap
            announce(f"embedded broker (memory only) at {bootstrap}")
        config.state_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(bootstrap + "\n")
        applied = apply_topics(bootstrap, config, config)
        announce(f"topics applied: {', '.join(applied) or 'none'}")
        env = child_env({"NEWSWATCH_KAFKA_BOOTSTRAP": bootstrap, **(extra_env or {})})
        ports = {
            "fetcher": config.http.fetcher_port,
            "matcher": config.http.matcher_port,
            "notifier": config.http.notifier_port,
        }
        children = []
        for name in SERVICES:
            args = python_module_command(name, "--http-port", str(ports[name]))
            if config_path is not None:
                args += ["--config", str(config_path)]
            children.append(Child(name, args, env))
        supervisor = Supervisor(children, log_dir=log_dir, broker=broker, grace=config.stop_grace)
        if on_force is not None:
            on_force(supervisor.kill)
        announce(
            "services: " + ", ".join(f"{n} http://{config.http.host}:{ports[n]}/metrics" for n in SERVICES)
        )
        supervisor.run(stop)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if broker is not None:
            broker.stop()
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
