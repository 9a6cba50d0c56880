from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newswatch.fetcher.dedup import Known, content_hash, decide
from newswatch.shared.contract import Item, Source

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def item(
    item_id: str, title: str = "Title", summary: str = "Summary", hours_ago: float = 1, url: str = ""
) -> Item:
    return Item(
        item_id=item_id,
        title=title,
        summary=summary,
        canonical_url=url or f"https://news.example/{item_id}",
        published=NOW - timedelta(hours=hours_ago),
        fetched_at=NOW,
        source=Source(feed_url="https://news.example/feed.xml"),
    )


def test_content_hash_ignores_case_spacing_and_punctuation() -> None:
    a = item("a" * 16, "North Korea, troops!", "Deployed  to Ukraine.")
    b = item("a" * 16, "north korea troops", "deployed to ukraine")
    c = item("a" * 16, "North Korea troops withdrawn", "Deployed to Ukraine.")
    assert content_hash(a) == content_hash(b) != content_hash(c)


def test_new_seen_and_updated_items() -> None:
    new, same, changed = item("n" * 16), item("s" * 16), item("c" * 16, title="Changed headline")
    known = {
        same.item_id: Known(content_hash(same), 1),
        changed.item_id: Known(content_hash(item("c" * 16)), 2),
    }
    d = decide([new, same, changed], known, {}, False, NOW, DAY, 20)
    assert {(i.item_id, i.kind, i.revision) for i in d.publish} == {
        (new.item_id, "new", 1),
        (changed.item_id, "update", 3),
    }
    assert d.counts == {"new": 1, "seen": 1, "updated": 1}
    assert {(r.item_id, r.revision) for r in d.remember} == {(new.item_id, 1), (changed.item_id, 3)}
    assert d.claims == [(new.canonical_url, new.item_id)]


def test_seen_without_a_hash_is_never_republished() -> None:
    old = item("o" * 16)
    d = decide([old], {old.item_id: Known("", 1)}, {}, False, NOW, DAY, 20)
    assert d.publish == [] and d.counts == {"seen": 1}


def test_same_canonical_url_is_published_once() -> None:
    first = item("f" * 16, url="https://news.example/story")
    twin = item("t" * 16, url="https://news.example/story")
    elsewhere = item("e" * 16, url="https://news.example/other")
    d = decide([first, twin], {}, {}, False, NOW, DAY, 20)
    assert len(d.publish) == 1 and d.counts["same_url"] == 1
    d = decide([elsewhere], {}, {"https://news.example/other": "x" * 16}, False, NOW, DAY, 20)
    assert d.publish == [] and d.also_in == ["https://news.example/other"]
    assert [r.item_id for r in d.remember] == [elsewhere.item_id]  # never considered again


def test_first_poll_publishes_only_recent_items_up_to_the_cap() -> None:
    items = [item(f"{i:016d}", hours_ago=i) for i in range(40)]  # 0..39 hours old
    d = decide(items, {}, {}, True, NOW, DAY, 20)
    published = {i.item_id for i in d.publish}
    assert published == {f"{i:016d}" for i in range(20)}  # the 20 newest (all < 24 h)
    assert d.counts == {"new": 20, "backfill": 20}
    assert len(d.remember) == 40  # skipped ones are remembered: never published later
    times = [i.published or NOW for i in d.publish]
    assert times == sorted(times)  # oldest first
    later = decide(items, {}, {}, False, NOW, DAY, 20)
    assert len(later.publish) == 40  # the cap is for the first poll only
