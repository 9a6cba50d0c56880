"""Valid contract items for tests."""

from __future__ import annotations

from datetime import UTC, datetime

from newswatch.shared.contract import Item, Source

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_item(item_id: str, title: str = "Title", summary: str = "Summary", revision: int = 1) -> Item:
    """An item whose id is ``item_id`` padded to the contract's minimum length."""
    return Item(
        item_id=item_id.ljust(8, "_"),
        kind="update" if revision > 1 else "new",
        revision=revision,
        title=title,
        summary=summary,
        canonical_url=f"https://news.example/{item_id}",
        fetched_at=NOW,
        source=Source(feed_url="https://news.example/feed.xml"),
    )
