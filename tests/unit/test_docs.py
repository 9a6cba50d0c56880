"""The documentation matches the code: the generated reference parts (settings, environment
variables, metrics, commands, API and web routes) are what the code gives today, in both
directions; every Kafka topic is documented and every documented one exists; links between
the documents resolve; the README stays a short front page with the two quick-start commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newswatch.shared.contract import ALL_TOPICS
from tests.support.reference import DOCS, PARTS, documented

ROOT = DOCS.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(PARTS))
def test_each_generated_part_matches_the_code(name: str) -> None:
    relative, make = PARTS[name]
    found = documented()
    assert name in found, f"docs/{relative} lacks its <!-- generated: {name} --> block"
    assert found[name] == make(), f"docs/{relative} is out of date with the code: run `make docs`"


def test_every_setting_and_route_has_a_description() -> None:
    for name in ("settings", "api", "web", "commands", "metrics"):
        rows = [r for r in PARTS[name][1]().splitlines()[2:] if r.rstrip().endswith("|  |")]
        assert not rows, f"{name}: documented without a description: {rows}"


def test_every_kafka_topic_is_documented_and_every_documented_one_exists() -> None:
    text = (DOCS / "reference" / "kafka.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| `newswatch.")]
    named = {re.match(r"\| `([^`]+)`", line).group(1) for line in table}  # type: ignore[union-attr]
    assert named == set(ALL_TOPICS)


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [m for m in re.findall(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"", text) for m in m if m]


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))], ids=lambda p: p.name)
def test_links_between_documents_resolve(path: Path) -> None:
    broken = []
    for link in _links(path):
        if link.startswith(("http://", "https://", "mailto:", "#")):
            continue
        target = (path.parent / link.split("#", 1)[0]).resolve()
        if not target.exists():
            broken.append(link)
    assert not broken


def test_the_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) < 100
    assert "make demo" in README and "make test" in README
    assert "docs/subscribers.md" in README and "docs/operators.md" in README
    assert (
        (ROOT / "LICENSE")
        .read_text(encoding="utf-8")
        .startswith("\n                                 Apache License")
    )
