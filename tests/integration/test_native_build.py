"""The C build is optional: when every compile fails (here a C compiler that always fails),
the build still succeeds, keeps no half of mypyc's group, and the package runs its Python
source (the matcher says so at start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_a_failing_compiler_leaves_a_pure_python_build(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so")
    shutil.copytree(ROOT / "services", source / "services", ignore=ignore)
    shutil.copytree(ROOT / "shared", source / "shared", ignore=ignore)
    env = {**os.environ, "CC": "false"}
    env.pop("NEWSWATCH_PURE_PYTHON", None)
    # As `pip install` builds: in an isolated build environment.
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(source),
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("newswatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert not [n for n in names if n.endswith(".so")], "a failed build must keep no extension"
    assert "newswatch/matcher/document.py" in names and "newswatch/matcher/keypairs.py" in names
