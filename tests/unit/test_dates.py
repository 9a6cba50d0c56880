from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newswatch.fetcher.dates import parse_any_date, parse_localized_rfc822
from newswatch.fetcher.normalize import FeedContext, normalize_entry
from newswatch.fetcher.parse import parse_feed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Seg, 24 Set 2018 19:42:40 -0300", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),
        ("mer, 16 nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),
        ("Di, 3 Mär 2020 08:00 +0100", datetime(2020, 3, 3, 7, 0, tzinfo=UTC)),
        ("3 décembre 2021 10:00:00 GMT", datetime(2021, 12, 3, 10, 0, tzinfo=UTC)),
    ],
)
def test_localized_rfc822(text: str, expected: datetime) -> None:
    assert parse_localized_rfc822(text) == expected


@pytest.mark.parametrize("text", ["Seg, 24 Xyz 2018 19:42:40 -0300", "yesterday", "", "2018-09-24"])
def test_unreadable_dates_are_none(text: str) -> None:
    assert parse_localized_rfc822(text) is None


def test_parse_any_date_forms() -> None:
    assert parse_any_date("2019-05-31T19:17:58Z") == datetime(2019, 5, 31, 19, 17, 58, tzinfo=UTC)
    assert parse_any_date("2019-05-31T12:17:58") == datetime(2019, 5, 31, 12, 17, 58, tzinfo=UTC)
    assert parse_any_date("Fri, 31 May 2019 12:17:58 -0700") == datetime(2019, 5, 31, 19, 17, 58, tzinfo=UTC)
    assert parse_any_date(None) is None
    assert parse_any_date("soon") is None


def test_localized_dates_feedparser_cannot_read_are_read_in_normalization() -> None:
    rss = (
        b"<rss version='2.0'><channel><title>t</title><item><guid>1</guid>"
        b"<pubDate>Seg, 24 Set 2018 19:42:40 -0300</pubDate></item></channel></rss>"
    )
    entry = parse_feed(rss, "application/rss+xml", "http://x/").entries[0]
    fetched = datetime(2026, 11, 25, tzinfo=UTC)
    item = normalize_entry(entry, FeedContext("http://x/"), fetched)
    assert item.published == datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)
    assert "date_missing" not in item.flags
