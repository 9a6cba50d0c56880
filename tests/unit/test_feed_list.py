from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from newswatch.fetcher.feed_table import effective_feeds, owns
from newswatch.fetcher.opml import OpmlError, OpmlFeed, read_opml, write_opml
from newswatch.shared.config import FeedConfig
from newswatch.shared.contract import FeedDefinition

NOW = datetime(2026, 11, 25, tzinfo=UTC)
OPML = b"""<?xml version="1.0"?><opml version="2.0"><head><title>Mine</title></head><body>
<outline text="News"><outline text="World" title="World news" type="rss" xmlUrl="https://news.example/world.xml"/>
<outline text="Tech" xmlUrl="https://tech.example/feed"/></outline>
<outline text="Dup" xmlUrl="https://tech.example/feed"/><outline text="Folder only"/></body></opml>"""


def test_read_opml_nested_and_deduplicated() -> None:
    assert read_opml(OPML) == [
        OpmlFeed("https://news.example/world.xml", "World news"),
        OpmlFeed("https://tech.example/feed", "Tech"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<opml><body><outline", "not well-formed XML"),
        (b"<rss/>", "expected <opml>"),
        (b'<opml><body><outline xmlUrl="file:///etc/passwd"/></body></opml>', "non-http(s) xmlUrl"),
        (b'<!DOCTYPE opml [<!ENTITY a "b">]><opml/>', "entity declarations"),
    ],
)
def test_bad_opml_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=re.escape(message)):
        read_opml(data, "mine.opml")


def test_opml_round_trip_escapes_titles() -> None:
    feeds = [OpmlFeed("https://a.example/f?x=1&y=2", 'Quotes "and" <angles>'), OpmlFeed("https://b.example/")]
    assert read_opml(write_opml(feeds).encode()) == [
        feeds[0],
        OpmlFeed("https://b.example/", "https://b.example/"),
    ]


def test_runtime_definitions_override_the_config() -> None:
    config = [FeedConfig(url="https://a.example/f", interval=60), FeedConfig(url="https://b.example/f")]
    overrides = {
        "https://a.example/f": FeedDefinition(
            url="https://a.example/f", state="active", interval=600, updated_at=NOW
        ),
        "https://b.example/f": FeedDefinition(url="https://b.example/f", state="paused", updated_at=NOW),
        "https://c.example/f": FeedDefinition(url="https://c.example/f", updated_at=NOW),
    }
    feeds = effective_feeds(config, overrides)
    assert sorted(feeds) == ["https://a.example/f", "https://c.example/f"]
    assert feeds["https://a.example/f"].interval == 600
    assert feeds["https://c.example/f"].interval is None


def test_replicas_split_feeds_without_overlap() -> None:
    urls = [f"https://host{i % 7}.example/feed/{i}" for i in range(3000)]
    owners = [[u for u in urls if owns(u, r, 3)] for r in range(3)]
    assert sorted(u for part in owners for u in part) == sorted(urls)  # each feed exactly once
    assert all(800 < len(part) < 1200 for part in owners)  # and roughly evenly
    assert all(owns(u, 0, 1) for u in urls)
