"""Imports run one way: no package of newswatch has a cycle among its modules (a newcomer
can read each module after the ones it imports), and the common library imports no service.

Every import counts, also one inside a function (a local import hides a cycle, it does not
remove it); only imports under ``if TYPE_CHECKING:`` are left out."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGES = ("newswatch.notifier", "newswatch.matcher", "newswatch.fetcher", "newswatch.shared")


def _modules(package: str) -> dict[str, Path]:
    root = Path(importlib.import_module(package).__path__[0])
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def imports_of(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports (``from X import y`` counts as X and X.y)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def graph(package: str) -> dict[str, set[str]]:
    modules = _modules(package)
    return {m: {d for d in imports_of(m, p) if d in modules and d != m} for m, p in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    edges = graph(package)
    assert len(edges) > 3
    assert cycles(edges) == [], f"import cycles in {package}"


def test_the_notifier_reads_one_way() -> None:
    """The layers the notifier's docs describe: intake → router → outbox; dispatcher →
    channels → render; value types in model import nothing of the notifier."""
    edges = graph("newswatch.notifier")
    n = "newswatch.notifier."
    assert edges[n + "model"] == set()
    assert n + "router" in edges[n + "intake"] and n + "outbox" in edges[n + "router"]
    assert n + "channels" in edges[n + "dispatcher"] and n + "render" in edges[n + "channels"]
    lower = {n + m for m in ("model", "render", "channels", "outbox", "router", "schema")}
    upward = {(m, d) for m in lower for d in edges[m] if d.startswith(n + "api") or d == n + "service"}
    assert not upward


def test_the_common_library_imports_no_service() -> None:
    services = ("newswatch.fetcher", "newswatch.matcher", "newswatch.notifier")
    offenders = {
        (module, name)
        for module, path in _modules("newswatch.shared").items()
        for name in imports_of(module, path)
        if name.startswith(services)
    }
    assert not offenders
