"""Expected item titles, links and dates from the corpus's upstream test suites.

Each reader returns, for one input feed, a list of entries as (title, link, date) where
any field may be None (not asserted upstream). Dates are UTC datetimes.
"""

from __future__ import annotations

import ast
import calendar
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

Expected = list[tuple[str | None, str | None, datetime | None]]


def parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def load_json(path: Path) -> Any:
    """Expected-output JSON; one rss-parser file is ISO-8859-1, not UTF-8."""
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return json.loads(raw.decode("latin-1"))


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def rss_parser(path: Path) -> Expected | None:
    """rss-parser: test/input/NAME.* → test/output/NAME.json (feed.items[].title/link/isoDate)."""
    out = path.parent.parent / "output" / f"{path.stem}.json"
    if path.parent.name != "input" or not out.exists():
        return None
    items = load_json(out)["feed"].get("items", [])
    return [(i.get("title"), i.get("link"), parse_date(i.get("isoDate") or i.get("pubDate"))) for i in items]


def feed_rs(path: Path) -> Expected | None:
    """feed-rs: STEM.ext → STEM.serde.json (entries[].title.content, links[0].href, published)."""
    out = path.with_name(f"{path.stem}.serde.json")
    if not out.exists() or path.name.endswith(".serde.json"):
        return None
    entries = load_json(out).get("entries", [])
    return [
        (
            _text(e.get("title")),
            (e.get("links") or [{}])[0].get("href"),
            parse_date(e.get("published") or e.get("updated")),
        )
        for e in entries
    ]


def gofeed(path: Path) -> Expected | None:
    """gofeed: NAME.xml → NAME.json (translator and parser models), NAME.json → NAME_expected.json."""
    if path.suffix == ".json":
        out = path.with_name(f"{path.stem}_expected.json")
        if path.stem.endswith("_expected") or not out.exists():
            return None
        items = load_json(out).get("items") or []
        return [(i.get("title"), i.get("url"), parse_date(i.get("date_published"))) for i in items]
    out = path.with_suffix(".json")
    if not out.exists():
        return None
    data = load_json(out)
    items = data.get("items") or data.get("entries") or []
    expected: Expected = []
    for i in items:
        link = i.get("link")
        if isinstance(link, dict):
            link = link.get("href")
        if link is None and i.get("links"):
            first = i["links"][0]
            link = first.get("href") if isinstance(first, dict) else first
        date = i.get("publishedParsed") or i.get("published") or i.get("pubDate")
        if date is None and "translator" in path.parts:
            date = i.get("updatedParsed")
        expected.append((_text(i.get("title")), link if isinstance(link, str) else None, parse_date(date)))
    return expected


_EXPECT = re.compile(r"Description:\s*(.*?)\s*Expect:\s*(.*)\s*-->")
_FIELDS = {"title": 0, "link": 1, "published_parsed": 2, "updated_parsed": 2}


def decode_like_upstream(raw: bytes) -> str:
    """How feedparser's test runner decodes a test file to read its comment."""
    if raw[:4] in (b"\x00\x00\xfe\xff", b"\x00\x00\x00<"):
        return raw.decode("utf-32-be", "ignore")
    if raw[:4] in (b"\xff\xfe\x00\x00", b"<\x00\x00\x00"):
        return raw.decode("utf-32-le", "ignore")
    if raw[:2] == b"\xfe\xff" or raw[:4] == b"\x00<\x00?":
        return raw.decode("utf-16-be", "ignore")
    if raw[:2] == b"\xff\xfe" or raw[:4] == b"<\x00?\x00":
        return raw.decode("utf-16-le", "ignore")
    return raw.decode("utf-8", "ignore")


def feedparser_expect(path: Path, base_url: str) -> Expected | None:
    """feedparser: pull `entries[i]['title'|'link'|'published_parsed'] == LITERAL` out of Expect."""
    match = _EXPECT.search(decode_like_upstream(path.read_bytes()))
    if not match:
        return None
    try:
        tree = ast.parse(match.group(2).strip(), mode="eval")
    except SyntaxError:
        return None
    found: dict[int, list[Any]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
            continue
        target = node.left
        if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Subscript)):
            continue
        outer, inner = target, target.value
        if not (isinstance(inner.value, ast.Name) and inner.value.id in ("entries", "items")):
            continue
        try:
            index = ast.literal_eval(inner.slice)
            field = ast.literal_eval(outer.slice)
            value = ast.literal_eval(node.comparators[0])
        except ValueError:
            continue
        if not isinstance(index, int) or field not in _FIELDS:
            continue
        slot = found.setdefault(index, [None, None, None])
        if _FIELDS[field] == 2:
            if isinstance(value, tuple) and len(value) == 9:
                slot[2] = datetime.fromtimestamp(calendar.timegm(value), UTC)
        elif isinstance(value, str):
            slot[_FIELDS[field]] = value.replace("http://127.0.0.1:8097/", base_url)
    if not found:
        return None
    rows = [found.get(i, [None, None, None]) for i in range(max(found) + 1)]
    return [(r[0], r[1], r[2]) for r in rows]


READERS: dict[str, Callable[[Path], Expected | None]] = {
    "rss-parser": rss_parser,
    "feed-rs": feed_rs,
    "gofeed": gofeed,
}
