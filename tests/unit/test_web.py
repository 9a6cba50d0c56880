"""The web app's pure parts: the subscription form both ways, the alert feeds, the recent-items
cache of the live preview."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import feedparser
import jsonschema

from newswatch.notifier.recent import RecentItems
from newswatch.notifier.web.feeds import Feed, FeedEntry, atom, json_feed
from newswatch.notifier.web.forms import SubscriptionForm
from newswatch.shared.config import SubscriptionConfig
from newswatch.shared.contract import Item
from tests.support.items import make_item
from tests.support.jsonfeed import JSON_FEED_SCHEMA


def test_a_filled_in_form_becomes_a_subscription_and_back() -> None:
    values = {
        "channel": "email",
        "address": "me@example.org",
        "rhythm": "weekly",
        "day": "friday",
        "at": "17:30",
        "timezone": "Europe/Berlin",
        "quiet_from": "22:00",
        "quiet_to": "07:00",
        "max_per_hour": "5",
        "updates": "on",
    }
    form = SubscriptionForm.from_form(values, ["nk", "markets"])
    spec = form.spec("nk-abc123")
    assert spec is not None, form.errors
    assert (spec.id, spec.to, spec.mode, spec.quiet_hours) == (
        "nk-abc123",
        "mailto:me@example.org",
        "weekly on friday at 17:30",
        "22:00-07:00",
    )
    assert spec.max_per_hour == 5 and spec.updates and spec.topics == ("nk", "markets")
    back = SubscriptionForm.from_spec(spec)
    assert (back.rhythm, back.day, back.at, back.address, back.quiet_from) == (
        "weekly",
        "friday",
        "17:30",
        "me@example.org",
        "22:00",
    )


def test_every_wrong_field_is_named_at_once() -> None:
    form = SubscriptionForm.from_form(
        {"channel": "webhook", "address": "ftp://x", "timezone": "Mars/Base", "max_per_hour": "many"}, []
    )
    assert form.spec("x") is None
    assert set(form.errors) >= {"topics", "address", "timezone", "max_per_hour"}, form.errors
    half = SubscriptionForm.from_form({"address": "a@example.org", "quiet_from": "22:00"}, ["nk"])
    assert half.spec("x") is None and "quiet" in half.errors


def test_a_snooze_is_read_in_the_subscriptions_time_zone() -> None:
    form = SubscriptionForm.from_form(
        {"address": "a@example.org", "timezone": "Asia/Tokyo", "snooze_until": "2026-12-24T18:00"}, ["nk"]
    )
    spec = form.spec("x")
    assert spec is not None and spec.snooze_until == datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
    assert SubscriptionForm.from_spec(spec).snooze_until == "2026-12-24T18:00"
    hook = SubscriptionConfig(id="h", topics=("nk",), to="https://hooks.example/x")
    assert SubscriptionForm.from_spec(hook).channel == "webhook"


def _feed(*ids: str) -> Feed:
    at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    entries = [
        FeedEntry(
            i,
            "nk",
            f"Story <{i}> & more",
            f"https://news.example/{i}",
            "World",
            "Troops moved.",
            ["troops"],
            at,
        )
        for i in ids
    ]
    return Feed(
        "newswatch alerts: nk",
        "http://h/app/alerts",
        "http://h/feeds/t.atom",
        "http://h/feeds/t.json",
        entries,
    )


def test_feeds_are_valid_and_their_validator_follows_the_entries() -> None:
    feed = _feed("a1", "a2")
    parsed = feedparser.parse(atom(feed))
    assert not parsed.bozo and [e.title for e in parsed.entries] == ["Story <a1> & more", "Story <a2> & more"]
    assert parsed.entries[0].id == "urn:newswatch:alert:a1"
    body = json.loads(json_feed(feed))
    jsonschema.validate(body, JSON_FEED_SCHEMA)
    assert [i["id"] for i in body["items"]] == [e.id for e in parsed.entries]
    assert feed.etag == _feed("a1", "a2").etag != _feed("a1").etag
    assert feed.last_modified == "Sat, 05 Dec 2026 09:00:00 GMT"
    assert not feedparser.parse(atom(_feed())).bozo  # an empty feed is a valid feed


def test_recent_items_are_read_once_per_ttl_and_filtered_by_their_publish_time() -> None:
    reads: list[float] = []
    now = {"mono": 0.0, "wall": 1_000_000.0}
    old, new = make_item("old"), make_item("new")

    def read(since: float) -> list[tuple[float, Item]]:
        reads.append(since)
        return [(now["wall"] - 3600, old), (now["wall"] - 60, new)]

    cache = RecentItems(read, ttl=30, monotonic=lambda: now["mono"], wall=lambda: now["wall"])
    assert [i.item_id for i in cache.get(7200)] == [old.item_id, new.item_id]
    assert [i.item_id for i in cache.get(600)] == [new.item_id]  # from the same read
    assert reads == [7200]
    cache.get(86400)  # a longer period than the one read: read again
    now["mono"] = 31.0
    cache.get(600)  # stale: read again
    assert reads == [7200, 86400, 600]


def test_concurrent_previews_share_one_read() -> None:
    started, release = threading.Event(), threading.Event()
    reads: list[float] = []

    def read(since: float) -> list[tuple[float, Item]]:
        reads.append(since)
        started.set()
        release.wait(5)
        return []

    cache = RecentItems(read)
    threads = [threading.Thread(target=cache.get, args=(600,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert reads == [600]
