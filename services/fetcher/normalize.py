"""Feed entries → contract Items (pure functions, no I/O)."""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from newswatch.shared.contract import Item, Source

_SPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})
    _BLOCK = frozenset(
        {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def plain_text(value: str) -> str:
    """HTML or text → plain text: tags stripped, entities decoded, whitespace collapsed."""
    if "<" in value or "&" in value:
        extractor = _TextExtractor()
        extractor.feed(value)
        extractor.close()
        value = html.unescape("".join(extractor.parts))
    return _SPACE.sub(" ", value).strip()


def item_id_for(feed_url: str, entry: Any) -> str:
    """Stable id: the entry's guid, else its link, else its title and date, within its feed."""
    identity = (
        entry.get("id") or entry.get("link") or f"{entry.get('title', '')}|{entry.get('published', '')}"
    )
    return hashlib.sha256(f"{feed_url}\x00{identity}".encode()).hexdigest()[:32]


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def normalize_entry(entry: Any, feed_url: str, feed_title: str, fetched_at: datetime) -> Item:
    summary = entry.get("summary", "")
    if not summary and entry.get("content"):
        summary = entry["content"][0].get("value", "")
    return Item(
        item_id=item_id_for(feed_url, entry),
        url=str(entry.get("link", "")),
        title=plain_text(str(entry.get("title", ""))),
        summary=plain_text(str(summary))[:5000],
        published=_when(entry),
        fetched_at=fetched_at,
        guid=str(entry.get("id", "")),
        source=Source(
            feed_url=feed_url, feed_title=plain_text(feed_title), host=urlsplit(feed_url).hostname or ""
        ),
    )
