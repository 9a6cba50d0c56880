"""Matcher errors."""

from __future__ import annotations

from newswatch.shared.errors import NewswatchError


class QueryError(NewswatchError):
    """A topic query cannot be compiled; says where and what was expected."""

    def __init__(self, query: str, position: int, message: str) -> None:
        self.query = query
        self.position = position
        pointer = " " * position + "^"
        super().__init__(f"{message} at position {position}:\n  {query}\n  {pointer}")


class AliasError(NewswatchError):
    """An alias file or alias set is invalid; says which file or set."""


class EvaluationError(NewswatchError):
    """The matcher's two compilations of a query disagree about an item: a bug to report."""
