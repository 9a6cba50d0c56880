"""Locating the shared test corpus (../shared/corpus next to the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"


def corpus_dir(*parts: str) -> Path:
    """The corpus folder, or a failure in CI / a clearly reported skip elsewhere."""
    path = CORPUS.joinpath(*parts)
    if path.is_dir():
        return path
    message = f"the shared corpus is missing: {path} (expected next to the repository as ../shared/corpus)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
