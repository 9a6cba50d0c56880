"""OPML import and export of feed lists (pure: bytes in, definitions out, and back)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

from newswatch.shared.errors import NewswatchError


class OpmlError(NewswatchError):
    """The OPML document cannot be read; says where."""


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str = ""


def read_opml(data: bytes, source: str = "OPML") -> list[OpmlFeed]:
    """Every ``outline`` with an http(s) ``xmlUrl``, nested folders included, in order, once."""
    if b"<!ENTITY" in data:
        raise OpmlError(f"{source}: entity declarations are not allowed")
    try:
        root = ET.fromstring(data)  # noqa: S314 - no DTD entities (checked above); expat limits the rest
    except ET.ParseError as exc:
        raise OpmlError(f"{source}: not well-formed XML: {exc}") from exc
    if root.tag.lower() != "opml":
        raise OpmlError(f"{source}: the root element is <{root.tag}>, expected <opml>")
    feeds: dict[str, OpmlFeed] = {}
    problems = []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url:
            continue
        if urlsplit(url).scheme not in ("http", "https"):
            problems.append(url)
            continue
        feeds.setdefault(url, OpmlFeed(url, (outline.get("title") or outline.get("text") or "").strip()))
    if problems:
        raise OpmlError(f"{source}: outlines with non-http(s) xmlUrl: {', '.join(problems[:5])}")
    return list(feeds.values())


def write_opml(feeds: Iterable[OpmlFeed], title: str = "newswatch feeds") -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        f"  <head><title>{title}</title></head>",
        "  <body>",
    ]
    for feed in feeds:
        text = feed.title or feed.url
        lines.append(
            f'    <outline type="rss" text={quoteattr(text)} title={quoteattr(text)} xmlUrl={quoteattr(feed.url)}/>'
        )
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines)
