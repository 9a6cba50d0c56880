"""Large feeds are parsed in a child process that is stopped at the parse time cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newswatch.fetcher.errors import ParseError
from newswatch.fetcher.isolated_parse import parse_feed_capped
from newswatch.fetcher.parse import parse_feed
from tests.support.procs import descendants

pytestmark = pytest.mark.integration


def big_feed(items: int) -> bytes:
    body = "".join(
        f"<item><guid>{n}</guid><title>Story {n}</title><description>{'word ' * 40}</description></item>"
        for n in range(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{body}</channel></rss>'.encode()
    )


def test_large_feed_parses_in_a_child_like_in_process() -> None:
    body = big_feed(1000)
    isolated = parse_feed_capped(body, "application/rss+xml", "http://x/", 10_000_000, None, 60, 50_000)
    inline = parse_feed(body, "application/rss+xml", "http://x/")
    assert len(isolated.entries) == 1000
    assert [e["title"] for e in isolated.entries] == [e["title"] for e in inline.entries]
    assert isolated.title == "Big"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_parse_time_cap_stops_the_child() -> None:
    body = big_feed(10_000)  # about 3 MB: far more than 0.2 s of parsing
    with pytest.raises(ParseError, match=r"parsing took longer than 0\.2s"):
        parse_feed_capped(body, "application/rss+xml", "http://x/", 10_000_000, None, 0.2, 50_000)
    children = [cmdline(p) for p in descendants(os.getpid())]
    # multiprocessing's resource tracker lives as long as we do; a parser child must not
    assert not [c for c in children if "multiprocessing.spawn" in c], children


def test_errors_in_the_child_are_parse_errors() -> None:
    html = b"<html><body>" + b"<p>not a feed</p>" * 10_000 + b"</body></html>"
    with pytest.raises(ParseError, match="an HTML page"):
        parse_feed_capped(html, "text/html", "http://x/", 10_000_000, None, 60, 50_000)
