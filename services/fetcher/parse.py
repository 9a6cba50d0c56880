"""Turning a fetched body into feed entries, never handing feedparser an unsafe document.

feedparser expands DTD entities; an internal subset with nested entities costs quadratic
memory (a 106 KB feed can take 600 MB). No real feed needs entity declarations, so the
internal subset is stripped before feedparser sees the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import feedparser

from newswatch.fetcher.dates import parse_any_date
from newswatch.fetcher.decode import CappedDecoder
from newswatch.fetcher.errors import ParseError

_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_ENTITY_UTF16 = ("<!ENTITY".encode("utf-16-le"), "<!ENTITY".encode("utf-16-be"))
_INTERNAL_SUBSET = re.compile(rb"(<!DOCTYPE[^\[>]*)\[.*?\]\s*>", re.IGNORECASE | re.DOTALL)
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str
    entries: list[Any]
    language: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # feed-level keys (ttl, sy_updateperiod, …)
    base: str = ""  # what relative links are relative to: Content-Location, else the fetched URL


def strip_internal_subset(body: bytes) -> bytes:
    """Remove a DOCTYPE internal subset (where entities are declared) before parsing.

    Without its declarations an entity reference is just an unknown name, which
    feedparser's loose parser leaves alone: no expansion, no blow-up. A declaration that
    survives (outside a DOCTYPE, or in UTF-16 where the bytes differ) refuses the document.
    """
    stripped = _INTERNAL_SUBSET.sub(rb"\1>", body, count=1)
    if _ENTITY_DECL.search(stripped) or any(p in stripped for p in _ENTITY_UTF16):
        raise ParseError("document declares DTD entities (refused: entity-expansion attacks)")
    return stripped


def gunzip_capped(body: bytes, max_bytes: int) -> bytes:
    """Decompress a body that is gzip bytes without a Content-Encoding (seen in the wild)."""
    if not body.startswith(_GZIP_MAGIC):
        return body
    return CappedDecoder("gzip", max_bytes).feed(body)


def _json_date(value: object) -> Any:
    parsed = parse_any_date(value)
    return parsed.utctimetuple() if parsed else None


def parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 (feedparser 6.0 reads only XML), mapped to feedparser's entry keys."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"{url}: invalid JSON: {exc}") from exc
    # The spec's version is a jsonfeed.org URL; real feeds also write "1.0" or omit it.
    raw_items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(raw_items, list):
        raise ParseError(f"{url}: JSON document is not a JSON Feed (no items list)")
    entries = []
    for raw in raw_items:
        if not isinstance(raw, dict):
            continue
        entry = feedparser.FeedParserDict()
        entry["id"] = str(raw.get("id", "") or "")
        entry["link"] = str(raw.get("url", "") or raw.get("external_url", "") or "")
        entry["title"] = str(raw.get("title", "") or "")
        entry["summary"] = str(raw.get("summary") or raw.get("content_text") or raw.get("content_html") or "")
        if raw.get("content_html"):
            entry["content"] = [
                {"type": "text/html", "value": str(raw["content_html"]), "language": raw.get("language")}
            ]
        entry["published_parsed"] = _json_date(raw.get("date_published"))
        entry["updated_parsed"] = _json_date(raw.get("date_modified"))
        authors = raw.get("authors") or ([raw["author"]] if isinstance(raw.get("author"), dict) else [])
        entry["authors"] = [{"name": str(a.get("name", ""))} for a in authors if isinstance(a, dict)]
        entry["tags"] = [{"term": str(t)} for t in raw.get("tags") or () if isinstance(t, str)]
        entry["enclosures"] = [
            {"href": a.get("url"), "type": a.get("mime_type", ""), "length": a.get("size_in_bytes")}
            for a in raw.get("attachments") or ()
            if isinstance(a, dict) and a.get("url")
        ]
        entries.append(entry)
    return ParsedFeed(
        title=str(data.get("title", "")),
        link=str(data.get("home_page_url", "")),
        entries=entries,
        base=url,
        language=str(data.get("language", "") or ""),
        meta={"links": _json_links(data)},
    )


def _json_links(data: dict[str, Any]) -> list[dict[str, str]]:
    """JSON Feed's ``hubs`` (type WebSub) and ``feed_url`` as feedparser-style links (rel, href)."""
    links = [
        {"rel": "hub", "href": hub["url"]}
        for hub in data.get("hubs") or ()
        if isinstance(hub, dict)
        and str(hub.get("type", "")).lower() == "websub"
        and isinstance(hub.get("url"), str)
    ]
    if isinstance(data.get("feed_url"), str):
        links.append({"rel": "self", "href": data["feed_url"]})
    return links


def parse_feed(
    body: bytes,
    content_type: str,
    url: str,
    max_bytes: int = 10 * 1024 * 1024,
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse RSS/Atom/RDF/JSON Feed bytes; raise ParseError for non-feeds.

    ``headers`` are the response headers feedparser uses (charset, Content-Location as the
    base URL, Content-Language); ``url`` is the base when there is no Content-Location.
    """
    body = gunzip_capped(body, max_bytes)
    if body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return parse_json_feed(body, url)
    body = strip_internal_subset(body)
    headers = dict(headers or {})
    base = urljoin(url, headers.pop("content-location", "")) if headers.get("content-location") else url
    # No base URL for feedparser: given one, it joins it with itself at every element (a fifth
    # of its time); links are made absolute in normalize instead. Its HTML passes are off too:
    # titles and summaries become plain text, and rich content is sanitized by nh3.
    result = feedparser.parse(
        body,
        response_headers={**headers, "content-type": content_type},
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    version = result.get("version", "")
    feed = result.get("feed", {})
    if not version and not result.entries:
        reason = result.get("bozo_exception")
        kind = "an HTML page" if "html" in content_type.lower() else "not a recognised feed"
        raise ParseError(
            f"{url}: {kind} (content-type {content_type or 'none'}){f': {reason}' if reason else ''}"
        )
    return ParsedFeed(
        title=str(feed.get("title", "")),
        link=str(feed.get("link", "")),
        entries=list(result.entries),
        language=str(feed.get("language", "") or ""),
        meta=dict(feed),
        base=base,
    )
