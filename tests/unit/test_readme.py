"""The README documents every setting, metric, Kafka topic and command the code has."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from newswatch.cli import build_parser
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.shared.config import Config
from newswatch.shared.contract import ALL_TOPICS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = []
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += [
                f"{name}.{sub}"
                for sub in annotation.model_fields
                if f"{name}.{sub}" not in README and f"/ `{sub}`" not in README
            ]
        elif f"`{name}" not in README:
            missing.append(name)
    assert not missing


@pytest.mark.parametrize("metrics", [FetcherMetrics, MatcherMetrics, NotifierMetrics])
def test_every_metric_is_documented(metrics: type) -> None:
    registry = CollectorRegistry()
    metrics(registry)
    names = {m.name for m in registry.collect()}
    assert not [n for n in names if f"`{n}" not in README]


def test_every_topic_and_command_is_documented() -> None:
    assert not [t for t in ALL_TOPICS if f"`{t}`" not in README]
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    rows = [line for line in README.splitlines() if line.startswith("| `newswatch ")]
    undocumented = [
        c for c in subparsers.choices if not any(f"newswatch {c}" in r or f"\\| {c} " in r for r in rows)
    ]
    assert not undocumented
