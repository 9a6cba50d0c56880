"""A subscription's alerts as a feed: Atom (RFC 4287) and JSON Feed 1.1, built from the
delivery log. Pure: entries in, bytes out.

Each alert is one entry whose id is its alert id (the same id every channel uses for that
alert), so a reader never shows one alert twice; ``updated`` is when it was routed. The
validator (``etag``) changes exactly when the entries do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.etree import ElementTree as ET

ATOM = "http://www.w3.org/2005/Atom"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True)
class FeedEntry:
    alert_id: str
    topic: str
    title: str
    url: str  # http(s) only, else ""
    source: str
    snippet: str
    terms: list[str]
    at: datetime  # routed


@dataclass(frozen=True)
class Feed:
    title: str
    home_url: str
    atom_url: str
    json_url: str
    entries: Sequence[FeedEntry]

    @property
    def updated(self) -> datetime:
        return max((e.at for e in self.entries), default=datetime(2026, 1, 1, tzinfo=UTC))

    @property
    def etag(self) -> str:
        digest = hashlib.sha256()
        for entry in self.entries:
            digest.update(f"{entry.alert_id}\x00{entry.at.timestamp()}\x00".encode())
        digest.update(self.title.encode())
        return '"' + digest.hexdigest()[:32] + '"'

    @property
    def last_modified(self) -> str:
        return format_datetime(self.updated.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _summary(entry: FeedEntry) -> str:
    why = f"Matched {', '.join(entry.terms)}" if entry.terms else "Matched"
    return f"{entry.snippet}\n\n{why} · topic {entry.topic} · {entry.source}".strip()


def atom(feed: Feed) -> bytes:
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(root, f"{{{ATOM}}}title").text = feed.title
    ET.SubElement(root, f"{{{ATOM}}}id").text = feed.atom_url
    ET.SubElement(root, f"{{{ATOM}}}updated").text = feed.updated.isoformat()
    ET.SubElement(root, f"{{{ATOM}}}link", rel="self", type="application/atom+xml", href=feed.atom_url)
    ET.SubElement(root, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=feed.home_url)
    author = ET.SubElement(root, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "newswatch"
    ET.SubElement(root, f"{{{ATOM}}}generator").text = "newswatch"
    for entry in feed.entries:
        node = ET.SubElement(root, f"{{{ATOM}}}entry")
        ET.SubElement(node, f"{{{ATOM}}}id").text = f"urn:newswatch:alert:{entry.alert_id}"
        ET.SubElement(node, f"{{{ATOM}}}title").text = entry.title or "(untitled)"
        ET.SubElement(node, f"{{{ATOM}}}updated").text = entry.at.isoformat()
        if entry.url:
            ET.SubElement(node, f"{{{ATOM}}}link", rel="alternate", href=entry.url)
        ET.SubElement(node, f"{{{ATOM}}}category", term=entry.topic)
        ET.SubElement(node, f"{{{ATOM}}}summary", type="text").text = _summary(entry)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def json_feed(feed: Feed) -> bytes:
    document = {
        "version": JSON_FEED_VERSION,
        "title": feed.title,
        "home_page_url": feed.home_url,
        "feed_url": feed.json_url,
        "authors": [{"name": "newswatch"}],
        "items": [
            {
                "id": f"urn:newswatch:alert:{entry.alert_id}",
                **({"url": entry.url} if entry.url else {}),
                "title": entry.title or "(untitled)",
                "content_text": _summary(entry),
                "date_published": entry.at.isoformat(),
                "tags": [entry.topic],
            }
            for entry in feed.entries
        ],
    }
    return json.dumps(document, ensure_ascii=False).encode()
