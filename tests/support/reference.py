"""The reference parts of ``docs/`` generated from the code: every setting (from the settings'
own descriptions), every metric (from the services' registries), every command (from the
argument parser), every HTTP route (from the OpenAPI document and the web app's routes) and
the environment variables that are not settings.

Each part lives in its document between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``;
the text around it is written by hand. ``tests/unit/test_docs.py`` fails when a part differs
from what the code gives (a setting, metric, command or route added, removed or changed
without its documentation). ``make docs`` rewrites the parts:

    python -m tests.support.reference --write
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARK = re.compile(r"<!-- generated: (?P<name>[a-z-]+) -->\n(?P<body>.*?)<!-- end: (?P=name) -->", re.S)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    out, rest = "", int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def _is_duration(field: FieldInfo) -> bool:
    from newswatch.shared.durations import parse_duration

    return any(getattr(m, "func", None) is parse_duration for m in field.metadata)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value in ((), []):
        return "none" if value is None else "`[]`"
    if isinstance(value, SecretStr):
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float) and _is_duration(field):
        return f"`{_duration(float(value))}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model a field holds, and whether it holds a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], True
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0], False
    return None, False


def settings() -> Iterator[tuple[str, FieldInfo]]:
    """Every setting as (key path, field), in declaration order; lists of models as ``a[].b``."""
    from newswatch.shared.config import Config

    def walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
        for name, field in model.model_fields.items():
            inner, many = _model_of(field.annotation)
            if inner is not None:
                yield from walk(inner, f"{prefix}{name}{'[]' if many else ''}.")
            else:
                yield prefix + name, field

    yield from walk(Config, "")


def settings_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, field in settings():
        secret = (
            " A secret: also `<key>_file` (a file to read)." if "SecretStr" in str(field.annotation) else ""
        )
        rows.append(f"| `{key}` | {_default(field)} | {_cell((field.description or '') + secret)} |")
    return "\n".join(rows) + "\n"


def environment_table() -> str:
    from newswatch.shared.config import RESERVED_ENV, RESERVED_ENV_HELP

    rows = ["| variable | what it is |", "|---|---|"]
    rows += [f"| `{name}` | {_cell(RESERVED_ENV_HELP[name])} |" for name in sorted(RESERVED_ENV)]
    return "\n".join(rows) + "\n"


def _metric_objects(holder: object, seen: set[int]) -> Iterator[Any]:
    """The prometheus_client metrics a service's metrics object holds (nested ones too)."""
    from prometheus_client.metrics import MetricWrapperBase

    if id(holder) in seen:
        return
    seen.add(id(holder))
    for value in vars(holder).values():
        if isinstance(value, MetricWrapperBase):
            yield value
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("newswatch."):
            yield from _metric_objects(value, seen)


def metrics_table() -> str:
    """Every metric: its type, its labels (bounded values), the services that export it."""
    from newswatch.fetcher.metrics import FetcherMetrics
    from newswatch.matcher.metrics import MatcherMetrics
    from newswatch.notifier.metrics import NotifierMetrics

    found: dict[str, tuple[str, tuple[str, ...], str, set[str]]] = {}
    values: dict[tuple[str, str], set[str]] = {}  # the label values a service declares up front
    for service, make in (
        ("fetcher", FetcherMetrics),
        ("matcher", MatcherMetrics),
        ("notifier", NotifierMetrics),
    ):
        registry = CollectorRegistry()
        holder = cast(Callable[[CollectorRegistry], object], make)(registry)
        for family in registry.collect():
            for sample in family.samples:
                for label, value in sample.labels.items():
                    values.setdefault((family.name, label), set()).add(value)
        for metric in _metric_objects(holder, set()):
            kind = metric._type  # the documentation generator reads the declaration, not values
            name = metric._name + ("_total" if kind == "counter" else "")
            entry = found.setdefault(name, (kind, tuple(metric._labelnames), metric._documentation, set()))
            entry[3].add(service)
    rows = ["| metric | type | labels | services | meaning |", "|---|---|---|---|---|"]
    for name in sorted(found):
        kind, labels, help_text, services = found[name]
        base = name.removesuffix("_total") if kind == "counter" else name
        label_text = "; ".join(
            f"`{label}`" + (f": {', '.join(sorted(values[base, label]))}" if (base, label) in values else "")
            for label in labels
        )
        rows.append(
            f"| `{name}` | {kind} | {label_text} | {', '.join(sorted(services))} | {_cell(help_text)} |"
        )
    return "\n".join(rows) + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in action._choices_actions}
            found += [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return found


def commands_table() -> str:
    from newswatch.cli import build_parser

    rows = ["| command | what it does |", "|---|---|"]
    for _name, sub, help_text in _subcommands(build_parser()):
        inner = _subcommands(sub)
        if not inner:
            usage = " ".join(sub.format_usage().split()[1:])
            rows.append(f"| `{_cell(usage)}` | {_cell(help_text)} |")
        for _action_name, action, action_help in inner:
            usage = " ".join(action.format_usage().split()[1:])
            rows.append(f"| `{_cell(usage)}` | {_cell(action_help)} |")
    return "\n".join(rows) + "\n"


def _app() -> Any:
    from newswatch.notifier import web
    from newswatch.notifier.api import make_api

    app = make_api(cast(Any, None))  # the routes only: no context is needed to list them
    web.install(app)
    return app


def _first_paragraph(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0]


def api_table() -> str:
    """The JSON API, from its OpenAPI document (the routes' docstrings)."""
    spec = _app().openapi()
    rows = ["| method and path | what it does |", "|---|---|"]
    for path, operations in sorted(spec["paths"].items()):
        for method, operation in operations.items():
            text = _first_paragraph(operation.get("description")) or operation.get("summary", "")
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            shown = path + ("?" + "&".join(f"{name}=" for name in query) if query else "")
            rows.append(f"| `{method.upper()} {shown}` | {_cell(text)} |")
    rows.append("| `GET /openapi.json` | this API as an OpenAPI document (it needs a token too) |")
    return "\n".join(rows) + "\n"


def web_table() -> str:
    """The web app's pages and links (its routers, outside the OpenAPI document)."""
    from fastapi.routing import APIRoute

    from newswatch.notifier.web import pages, public

    found = []
    for router in (public.router, pages.router):
        for route in router.routes:
            if isinstance(route, APIRoute):
                found += [
                    (route.path, m, _first_paragraph(route.endpoint.__doc__))
                    for m in (route.methods or set()) - {"HEAD"}
                ]
    rows = ["| method and path | what it is |", "|---|---|"]
    rows += [f"| `{method} {path}` | {_cell(text)} |" for path, method, text in sorted(found)]
    rows.append("| `GET /static/{file}` | the CSS, the script and htmx |")
    return "\n".join(rows) + "\n"


PARTS: dict[str, tuple[str, Callable[[], str]]] = {
    "settings": ("reference/configuration.md", settings_table),
    "environment": ("reference/configuration.md", environment_table),
    "metrics": ("reference/metrics.md", metrics_table),
    "commands": ("reference/commands.md", commands_table),
    "api": ("reference/http-api.md", api_table),
    "web": ("reference/http-api.md", web_table),
}


def documented(docs: Path = DOCS) -> dict[str, str]:
    """Each generated part as the documents hold it now."""
    found = {}
    for path in sorted(docs.rglob("*.md")):
        for match in MARK.finditer(path.read_text(encoding="utf-8")):
            found[match.group("name")] = match.group("body")
    return found


def write(docs: Path = DOCS) -> list[str]:
    """Rewrites every part in place; returns the names of those that changed."""
    changed = []
    for name, (relative, make) in PARTS.items():
        path = docs / relative
        text = path.read_text(encoding="utf-8")
        body = make()

        def replace(match: re.Match[str], name: str = name, body: str = body) -> str:
            if match.group("name") != name:
                return match.group(0)
            return f"<!-- generated: {name} -->\n{body}<!-- end: {name} -->"

        new = MARK.sub(replace, text)
        if f"<!-- generated: {name} -->" not in text:
            raise SystemExit(f"{relative}: no <!-- generated: {name} --> … <!-- end: {name} --> block")
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(name)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.support.reference --write")
    print("rewrote:", ", ".join(write()) or "nothing (up to date)")
