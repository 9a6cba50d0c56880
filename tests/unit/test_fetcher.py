from __future__ import annotations

import gzip
import ipaddress
from datetime import UTC, datetime

import feedparser
import pytest

from newswatch.fetcher.errors import BlockedError, HttpStatusError, ParseError, TooLargeError
from newswatch.fetcher.http_fetch import Validators, fetch, make_client
from newswatch.fetcher.normalize import (
    FeedContext,
    feed_context,
    item_id_for,
    normalize_entry,
    plain_text,
    sanitize_html,
)
from newswatch.fetcher.parse import parse_feed, strip_internal_subset
from newswatch.shared.config import FetcherSettings
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.http import Reply, serve

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T &amp; Co</title><link>http://x/</link>
<item><title>A &lt;b&gt;bold&lt;/b&gt; title</title><link>http://x/a</link><guid>g1</guid>
<pubDate>Tue, 24 Nov 2026 10:00:00 +0100</pubDate><description>&lt;p&gt;First&amp;nbsp;para&lt;/p&gt;&lt;p&gt;Second &amp;amp; last&lt;/p&gt;</description></item>
<item><title>No guid</title><link>http://x/b</link></item>
</channel></rss>"""


def test_plain_text_strips_html_and_decodes_entities() -> None:
    assert plain_text("<p>Hello&nbsp;<b>world</b></p><script>evil()</script>\n\n  again &amp; again") == (
        "Hello world again & again"
    )
    assert plain_text("plain   text") == "plain text"


def test_parse_and_normalize_rss() -> None:
    parsed = parse_feed(RSS, "application/rss+xml", "http://x/feed")
    assert parsed.title == "T & Co"
    fetched = datetime(2026, 11, 25, tzinfo=UTC)
    items = [normalize_entry(e, FeedContext("http://x/feed", parsed.title), fetched) for e in parsed.entries]
    assert items[0].title == "A bold title"
    assert items[0].summary == "First para Second & last"
    assert items[0].published == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert items[0].source.host == "x"
    assert items[1].published == fetched
    assert items[1].flags == ("date_missing",)
    assert len({i.item_id for i in items}) == 2


def test_item_id_is_stable_and_scoped_to_the_feed() -> None:
    entry = feedparser.FeedParserDict(id="g1", link="http://x/a")
    assert item_id_for("http://f/1", entry) == item_id_for("http://f/1", feedparser.FeedParserDict(id="g1"))
    assert item_id_for("http://f/1", entry) != item_id_for("http://f/2", entry)


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    b'<rss version="2.0"><channel><title>T</title><item><title>x &d; y</title><guid>1</guid></item></channel></rss>'
)


def test_entity_declarations_are_stripped_not_expanded() -> None:
    assert strip_internal_subset(LAUGHS).startswith(b'<?xml version="1.0"?><!DOCTYPE rss ><rss')
    parsed = parse_feed(LAUGHS, "application/xml", "http://x/")
    assert len(parsed.entries) == 1
    assert "aaaa" not in parsed.entries[0]["title"]
    with pytest.raises(ParseError, match="declares DTD entities"):
        parse_feed(b'<rss><!ENTITY a "x"></rss>', "application/xml", "http://x/")
    with pytest.raises(ParseError, match="declares DTD entities"):
        parse_feed(LAUGHS.decode().encode("utf-16"), "application/xml", "http://x/")


def test_gzip_bytes_without_content_encoding_are_sniffed_and_capped() -> None:
    parsed = parse_feed(gzip.compress(RSS), "text/xml", "http://x/")
    assert len(parsed.entries) == 2
    with pytest.raises(TooLargeError, match="after decompression"):
        parse_feed(gzip.compress(b" " * 200_000 + RSS), "text/xml", "http://x/", max_bytes=100_000)


def test_html_page_is_a_clear_error() -> None:
    with pytest.raises(ParseError, match="an HTML page"):
        parse_feed(b"<html><body><p>Hello</p></body></html>", "text/html; charset=utf-8", "http://x/")


def test_json_feed_is_parsed() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [{"id": "1", "title": "Hi", "content_text": "x"}]}'
    parsed = parse_feed(body, "application/feed+json", "http://x/")
    assert parsed.title == "J" and parsed.entries[0]["title"] == "Hi"


def settings(**kw: object) -> FetcherSettings:
    return FetcherSettings(timeout=5, **kw)  # type: ignore[arg-type]


def test_conditional_get_sends_validators_independently(aio: Aio) -> None:
    def feed(headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(200, RSS, {"ETag": '"v1"', "Content-Type": "application/rss+xml"})

    def dated(headers: dict[str, str]) -> Reply:
        if headers.get("if-modified-since") == "Tue, 24 Nov 2026 10:00:00 GMT":
            return Reply(304)
        return Reply(200, RSS, {"Last-Modified": "Tue, 24 Nov 2026 10:00:00 GMT"})

    with serve({"/feed": feed, "/dated": dated}) as (base, seen):
        client = make_client(settings(), NetGuard(LOOPBACK))
        first = aio(fetch(client, f"{base}/feed", Validators(), settings()))
        assert first.status == 200 and first.validators == Validators(etag='"v1"')
        assert aio(fetch(client, f"{base}/feed", first.validators, settings())).not_modified
        dated_first = aio(fetch(client, f"{base}/dated", Validators(), settings()))
        assert dated_first.validators == Validators(last_modified="Tue, 24 Nov 2026 10:00:00 GMT")
        assert aio(fetch(client, f"{base}/dated", dated_first.validators, settings())).not_modified
        assert "if-modified-since" not in seen[1][1] and "if-none-match" not in seen[3][1]
        assert "newswatch" in seen[0][1]["user-agent"]


def test_body_cap_applies_after_decompression(aio: Aio) -> None:
    bomb = gzip.compress(b"<" * (5 * 1024 * 1024))
    with serve({"/bomb": lambda _h: Reply(200, bomb, {"Content-Encoding": "gzip"})}) as (base, _):
        client = make_client(settings(max_body_bytes=1024 * 1024), NetGuard(LOOPBACK))
        assert len(bomb) < 1024 * 1024
        with pytest.raises(TooLargeError, match="exceeds 1048576 bytes"):
            aio(fetch(client, f"{base}/bomb", Validators(), settings(max_body_bytes=1024 * 1024)))


def test_http_errors_and_ssrf_guard(aio: Aio) -> None:
    with serve({"/redirect": lambda _h: Reply(302, b"", {"Location": "http://127.0.0.2:9/x"})}) as (base, _):
        client = make_client(settings(), NetGuard(LOOPBACK))
        with pytest.raises(HttpStatusError, match="HTTP 404"):
            aio(fetch(client, f"{base}/missing", Validators(), settings()))
        guarded = make_client(settings(), NetGuard([]))
        with pytest.raises(BlockedError, match="not a public address"):
            aio(fetch(guarded, f"{base}/redirect", Validators(), settings()))
        only_first = make_client(settings(), NetGuard([ipaddress.ip_network("127.0.0.1/32")]))
        with pytest.raises(BlockedError, match=r"127\.0\.0\.2"):  # the redirect target is checked too
            aio(fetch(only_first, f"{base}/redirect", Validators(), settings()))


def test_json_feed_dates_and_errors() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1", "items": [{"id": "1", "date_published": "2026-11-24T10:00:00+01:00"}]}'
    entry = parse_feed(body, "application/json", "http://x/").entries[0]
    item = normalize_entry(entry, FeedContext("http://x/"), datetime(2026, 11, 25, tzinfo=UTC))
    assert item.published == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with pytest.raises(ParseError, match="not a JSON Feed"):
        parse_feed(b'{"hello": 1}', "application/json", "http://x/")
    rfc822 = (
        b'{"version": "1.0", "items": [{"id": "1", "date_published": "Fri, 31 May 2019 12:17:58 -0700"}]}'
    )
    entry = parse_feed(rfc822, "application/json", "http://x/").entries[0]
    item = normalize_entry(entry, FeedContext("http://x/"), datetime(2026, 11, 25, tzinfo=UTC))
    assert item.published == datetime(2019, 5, 31, 19, 17, 58, tzinfo=UTC)
    with pytest.raises(ParseError, match="invalid JSON"):
        parse_feed(b"{oops", "application/json", "http://x/")


FULL_RSS = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>World</title><link>https://news.example/</link><language>en-GB</language>
<item><title>Story</title><link>https://News.Example/story?utm_source=rss&amp;id=3#c</link><guid>s1</guid>
<pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate><dc:creator>Ann Writer</dc:creator>
<category>Politics</category><category>Europe</category><category>Politics</category>
<enclosure url="https://news.example/a.mp3" type="audio/mpeg" length="1234"/>
<description>Short &lt;b&gt;lede&lt;/b&gt;</description>
<content:encoded><![CDATA[<p onclick="x()">Body <script>steal()</script><a href="javascript:alert(1)">x</a></p>]]></content:encoded>
</item>
<item><title>From the future</title><guid>s2</guid><pubDate>Tue, 24 Nov 2099 10:00:00 GMT</pubDate></item>
</channel></rss>"""


def test_normalization_fields() -> None:
    parsed = parse_feed(FULL_RSS, "application/rss+xml", "https://news.example/feed.xml")
    context = FeedContext("https://news.example/feed.xml", parsed.title, parsed.link, parsed.language)
    fetched = datetime(2026, 11, 25, tzinfo=UTC)
    story, future = (normalize_entry(e, context, fetched) for e in parsed.entries)
    assert story.canonical_url == "https://news.example/story?id=3"
    assert story.summary == "Short lede"
    assert "<script" not in story.content_html and "onclick" not in story.content_html
    assert "javascript:" not in story.content_html and "Body" in story.content_html
    assert story.language == "en-gb"
    assert story.authors == ("Ann Writer",)
    assert story.categories == ("Politics", "Europe")
    assert [(e.url, e.type, e.length) for e in story.enclosures] == [
        ("https://news.example/a.mp3", "audio/mpeg", 1234)
    ]
    assert story.source.site == "https://news.example/" and story.source.host == "news.example"
    assert story.flags == ()
    assert future.published == fetched and future.flags == ("date_in_future",)


def test_sanitize_html_keeps_structure_and_drops_active_content() -> None:
    cleaned = sanitize_html(
        '<p style="x">a<iframe src="https://e/"></iframe><img src="https://e/i.png" onerror="x"></p>'
    )
    assert cleaned == '<p>a<img src="https://e/i.png"></p>'


def test_sanitized_content_links_are_absolute() -> None:
    html = '<p><a href="/story/2">next</a> <img src="pics/a.png"> <a href="https://other.example/x">x</a></p>'
    cleaned = sanitize_html(html, "https://news.example/world/story-1")
    assert 'href="https://news.example/story/2"' in cleaned
    assert 'src="https://news.example/world/pics/a.png"' in cleaned
    assert 'href="https://other.example/x"' in cleaned


def test_plain_text_separates_blocks_and_drops_scripts() -> None:
    assert plain_text("<p>one</p><p>two</p><br>three<script>x()</script>") == "one two three"
    assert plain_text("<b>bo</b>ld &amp; &lt;tag&gt;") == "bold & <tag>"
    assert plain_text("ab\x08cd\x00 e\tf\u200bg") == "abcd e f\u200bg"  # control characters go


def test_the_vetted_address_is_the_connected_one(aio: Aio) -> None:
    """Our resolver decides where we connect: a name that resolves to loopback is refused
    unless allowed, and when allowed we connect to exactly the address that was checked."""
    with serve({"/feed": lambda _h: Reply(200, RSS)}) as (base, seen):
        port = int(base.rsplit(":", 1)[1])
        rebinding = NetGuard([], resolver=lambda host, p: ["127.0.0.1"])
        with pytest.raises(BlockedError, match=r"rebind\.test resolves to 127\.0\.0\.1"):
            aio(
                fetch(
                    make_client(settings(), rebinding),
                    f"http://rebind.test:{port}/feed",
                    Validators(),
                    settings(),
                )
            )
        assert seen == []  # refused before any connection
        allowed = NetGuard(LOOPBACK, resolver=lambda host, p: ["127.0.0.1"])
        result = aio(
            fetch(
                make_client(settings(), allowed), f"http://rebind.test:{port}/feed", Validators(), settings()
            )
        )
        assert result.status == 200
        assert seen[0][1]["host"] == f"rebind.test:{port}"  # the Host header keeps the name


def test_language_is_declared_or_detected_and_flagged() -> None:
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Sem idioma</title>'
        b"<item><guid>1</guid><title>Rival de Putin condenado a mais 20 dias de pris\xc3\xa3o</title>"
        b"<description>O opositor foi detido durante protestos em Moscou no fim de semana.</description></item>"
        b"<item><guid>2</guid><title>Short</title></item></channel></rss>"
    )
    parsed = parse_feed(rss, "application/rss+xml", "http://x/")
    fetched = datetime(2026, 11, 25, tzinfo=UTC)
    guessed = feed_context("http://x/", parsed.title, parsed.link, parsed.language, parsed.entries)
    assert (guessed.language, guessed.language_detected) == ("pt", True)
    item = normalize_entry(parsed.entries[0], guessed, fetched)
    assert (item.language, "language_detected" in item.flags) == ("pt", True)
    declared = feed_context("http://x/", parsed.title, parsed.link, "pt-BR", parsed.entries)
    item = normalize_entry(parsed.entries[0], declared, fetched)
    assert (item.language, "language_detected" in item.flags) == ("pt-br", False)
    too_short = feed_context("http://x/", "", "", "", parsed.entries[1:])
    assert (too_short.language, too_short.language_detected) == ("", False)


def test_relative_links_resolve_against_content_location_xml_base_or_the_feed() -> None:
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>/home</link>'
        b"<item><guid>1</guid><title>One</title><link>/story/1?utm_source=x</link>"
        b'<description>&lt;a href="more"&gt;more&lt;/a&gt;</description></item></channel></rss>'
    )
    fetched = datetime(2026, 11, 25, tzinfo=UTC)
    cases = [
        ({}, "https://news.example/feeds/rss.xml"),
        ({"content-location": "/other/"}, "https://news.example/other/"),
    ]
    for headers, base in cases:
        assert (
            parse_feed(rss, "application/rss+xml", "https://news.example/feeds/rss.xml", headers=headers).base
            == base
        )
    parsed = parse_feed(rss, "application/rss+xml", "https://news.example/feeds/rss.xml")
    context = feed_context(
        "https://news.example/feeds/rss.xml", parsed.title, parsed.link, "en", parsed.entries, parsed.base
    )
    item = normalize_entry(parsed.entries[0], context, fetched)
    assert item.url == "https://news.example/story/1?utm_source=x"
    assert item.canonical_url == "https://news.example/story/1"
    assert 'href="https://news.example/story/more"' in item.content_html  # against the item's link
    assert item.source.site == "https://news.example/home"
    atom = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://cdn.example/blog/">'
        b'<title>A</title><entry><id>a1</id><title>A1</title><link href="posts/a1"/>'
        b'<content type="html" xml:base="https://cdn.example/img/">&lt;img src="x.png"&gt;</content></entry></feed>'
    )
    parsed = parse_feed(atom, "application/atom+xml", "https://news.example/atom.xml")
    context = feed_context(
        "https://news.example/atom.xml", parsed.title, parsed.link, "en", parsed.entries, parsed.base
    )
    item = normalize_entry(parsed.entries[0], context, fetched)
    assert item.url == "https://cdn.example/blog/posts/a1"
    assert 'src="https://cdn.example/img/x.png"' in item.content_html
