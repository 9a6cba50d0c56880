"""What a query would match among recent items: the API's topic test and the web app's live
preview share it. A query that does not parse is an answer too (the message and the
position to put a caret under), not an exception: the preview shows it while typing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from newswatch.matcher import replay
from newswatch.matcher.errors import QueryError
from newswatch.matcher.topics import Compiler
from newswatch.shared.contract import Item, MatchReason


@dataclass(frozen=True)
class Hit:
    item: Item
    reason: MatchReason

    @property
    def source(self) -> str:
        return self.item.source.feed_title or self.item.source.host

    def segments(self) -> list[tuple[str, bool]]:
        """The reason's snippet as (text, is a hit) runs, for a template to mark up safely."""
        return segments(self.reason.snippet, self.reason.highlights)


def segments(snippet: str, highlights: Sequence[Sequence[int]]) -> list[tuple[str, bool]]:
    """``snippet`` cut at the ``highlights`` spans into (text, is a hit) runs."""
    out: list[tuple[str, bool]] = []
    last = 0
    for start, end in highlights:
        if start > last:
            out.append((snippet[last:start], False))
        out.append((snippet[start:end], True))
        last = end
    if last < len(snippet):
        out.append((snippet[last:], False))
    return out


@dataclass(frozen=True)
class Preview:
    query: str
    items: int = 0
    matches: int = 0
    hits: list[Hit] = field(default_factory=list)
    aliases: list[tuple[str, list[str]]] = field(default_factory=list)
    error: str | None = None
    error_position: int | None = None

    @property
    def caret(self) -> str:
        """Spaces up to the error's position, then ``^`` (under the query in a monospace block)."""
        return " " * (self.error_position or 0) + "^"


def preview(compiler: Compiler, query: str, items: Sequence[Item], limit: int) -> Preview:
    """The hits of ``query`` among ``items``, best first, at most ``limit`` of them."""
    try:
        topic = compiler.compile("preview", query)
    except QueryError as exc:
        message = str(exc).split(" at position ", 1)[0]
        return Preview(query, error=message, error_position=exc.position)
    found = replay.evaluate(compiler, topic, items)
    return Preview(
        query,
        items=len(items),
        matches=len(found),
        hits=[Hit(item, reason) for item, reason in found[:limit]],
        aliases=compiler.aliases.expansions(query),
    )
