"""The matcher's hot modules are installed compiled (mypyc, see setup.py), and the pure-Python
source they are compiled from passes the same matcher tests, so both installs behave alike."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import newswatch
from newswatch.matcher.compiled import source_modules
from newswatch.matcher.metrics import MatcherMetrics

ROOT = Path(__file__).resolve().parents[2]


def _missing_toolchain() -> str | None:
    """setup.py's own answer to whether this machine can compile (not a copy of its check)."""
    spec = importlib.util.spec_from_file_location("newswatch_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing: str | None = module._missing_toolchain()
    return missing


def test_the_hot_modules_are_compiled() -> None:
    if os.environ.get("NEWSWATCH_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("NEWSWATCH_PURE_PYTHON is set: installed without compiling, on purpose")
    missing = _missing_toolchain()
    if missing is not None and os.environ.get("CI") != "true":  # in CI a missing compiler fails
        pytest.skip(f"{missing} on this machine: setup.py installed pure Python")
    assert source_modules() == []
    registry = CollectorRegistry()
    MatcherMetrics(registry)
    assert registry.get_sample_value("newswatch_matcher_compiled") == 1.0


def test_the_pure_python_source_passes_the_matcher_tests(tmp_path: Path) -> None:
    """The installed package without its compiled modules (what NEWSWATCH_PURE_PYTHON=1 or a
    machine without a compiler installs) runs the matcher's unit tests, oracle included."""
    pure = tmp_path / "newswatch"
    shutil.copytree(
        Path(newswatch.__file__).parent, pure, ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NEWSWATCH_PURE_PYTHON": "1"}
    probe = "from newswatch.matcher.compiled import source_modules; print(len(source_modules()))"
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "5"  # the three from the copy, as source, and the two Python twins
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_matcher.py",
            "tests/unit/test_keypairs.py",
            "tests/unit/test_words.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
