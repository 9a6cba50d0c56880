"""The matcher's C modules, for the tests that hold each to its Python twin."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def c_module(name: str, what: str) -> ModuleType:
    """``newswatch.matcher.<name>``, or a skip naming ``what`` runs instead when the install had
    no compiler. In CI the install has one, so a missing module fails there, unless
    NEWSWATCH_PURE_PYTHON says it was left out on purpose."""
    try:
        return importlib.import_module(f"newswatch.matcher.{name}")
    except ImportError:
        pure = os.environ.get("NEWSWATCH_PURE_PYTHON", "") not in ("", "0")
        if os.environ.get("CI") == "true" and not pure:
            raise
        pytest.skip(f"the C {name} was not built (no compiler at install): {what} runs instead")
