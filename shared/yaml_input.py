"""YAML as input from people: PyYAML's safe loader with its two costs bounded.

A YAML alias repeats a node wherever it is named, so a few hundred bytes of nested aliases
expand into megabytes ("billion laughs"): 353 bytes gave a 12.5 MB answer. Nothing
newswatch reads needs an alias, so an anchor or alias is refused where it stands. Nesting
is bounded too (PyYAML composes recursively: a few thousand ``[`` raised RecursionError).
"""

from __future__ import annotations

from typing import Any

import yaml

#: Deepest nesting of collections accepted (a config file needs 4).
MAX_DEPTH = 32


class YamlInputError(ValueError):
    """The document is not acceptable YAML; the message says where and why."""


class _Bounded(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _refused("aliases (*name) are not accepted", event)
        if getattr(event, "anchor", None) is not None:
            raise _refused("anchors (&name) are not accepted", event)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _refused(f"nested deeper than {MAX_DEPTH} levels", event)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _refused(problem: str, event: Any) -> yaml.YAMLError:
    return yaml.composer.ComposerError(None, None, problem, event.start_mark)


def load(text: str, source: str = "<input>") -> Any:
    """Parse ``text``; YamlInputError names ``source``, the line and column, and the problem."""
    try:
        return yaml.load(text, Loader=_Bounded)  # noqa: S506 - _Bounded is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlInputError(f"{where}: invalid YAML: {problem}") from exc
