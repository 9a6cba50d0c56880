from __future__ import annotations

import pytest

from newswatch.fetcher.canonical import canonical_url


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("HTTPS://News.Example.COM/World/Story?b=2&a=1#top", "https://news.example.com/World/Story?a=1&b=2"),
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&id=7&fbclid=x&gclid=y",
            "https://example.com/a?id=7",
        ),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com./a?x=", "https://example.com/a?x="),
        ("https://[2001:DB8::1]/a", "https://[2001:db8::1]/a"),
        ("mailto:someone@example.com", ""),
        ("javascript:alert(1)", ""),
        ("", ""),
        ("http://[::1/broken", ""),
    ],
)
def test_canonical_url(link: str, expected: str) -> None:
    assert canonical_url(link) == expected


def test_relative_links_resolve_against_the_feed() -> None:
    assert canonical_url("/story/1?utm_campaign=x", "https://example.com/feeds/world.xml") == (
        "https://example.com/story/1"
    )


def test_canonical_form_is_idempotent() -> None:
    url = canonical_url("https://Example.com/a?z=1&utm_x=2&a=b#f")
    assert canonical_url(url) == url
