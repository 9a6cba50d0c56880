"""The config file end-to-end tests give their service processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_config(tmp_path: Path, **sections: Any) -> Path:
    """A config for services on this machine: fast group joins (the test broker), loopback
    allowed, state under ``tmp_path``, the API on any free port; ``sections`` add to it
    (a mapping is merged into the section of the same name)."""
    config: dict[str, Any] = {
        "kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "allow_networks": ["127.0.0.0/8"],
        "state_dir": str(tmp_path / "state"),
        "http": {"api_port": 0},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    path = tmp_path / "newswatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
