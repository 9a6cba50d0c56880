"""The matcher's hot modules are installed compiled (mypyc, see setup.py), and the pure-Python
source they are compiled from passes the same matcher tests, so both installs behave alike."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import newswatch
from newswatch.matcher.compiled import source_modules
from newswatch.matcher.metrics import MatcherMetrics

ROOT = Path(__file__).resolve().parents[2]


def test_the_hot_modules_are_compiled() -> None:
    if os.environ.get("NEWSWATCH_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("NEWSWATCH_PURE_PYTHON is set: installed without compiling")
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if (shutil.which(compiler) is None or not headers.is_file()) and os.environ.get("CI") != "true":
        pytest.skip("no C compiler or Python headers here: the install is pure Python (setup.py says so)")
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
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    probe = "from newswatch.matcher.compiled import source_modules; print(len(source_modules()))"
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "3"  # all three from the copy, as source
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_matcher.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
