"""Which entries of a poll to publish: new items, revisions, and what to skip (pure logic).

- An item id already seen with the same content is a duplicate.
- An item id seen with materially different title/summary is published again as the next
  revision (``kind="update"``), never as a new item.
- A canonical URL already published by another item (another feed, or a changed guid) is
  not published again; this source is recorded as ``also_in``.
- On a feed's first poll only items newer than ``backfill`` are published, at most
  ``backfill_max`` of them: no flood of old news when a feed is added. The others are
  remembered as seen, so they are never published later either.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newswatch.shared.contract import Item

_WORDS = re.compile(r"\w+", re.UNICODE)


def content_hash(item: Item) -> str:
    """Hash of the words of title and summary: case, spacing and punctuation are not material."""
    words = " ".join(_WORDS.findall(f"{item.title}\n{item.summary}".lower()))
    return hashlib.sha256(words.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Known:
    """What the seen-set holds for an item id."""

    content_hash: str
    revision: int


@dataclass(frozen=True)
class Remember:
    item_id: str
    content_hash: str
    revision: int


@dataclass
class Decision:
    publish: list[Item] = field(default_factory=list)
    remember: list[Remember] = field(default_factory=list)
    claims: list[tuple[str, str]] = field(default_factory=list)  # (canonical_url, item_id)
    also_in: list[str] = field(default_factory=list)  # canonical URLs first published elsewhere
    counts: Counter[str] = field(default_factory=Counter)


def decide(
    items: list[Item],
    known: dict[str, Known],
    url_owners: dict[str, str],
    first_poll: bool,
    now: datetime,
    backfill: timedelta,
    backfill_max: int,
) -> Decision:
    """``url_owners`` maps canonical URLs to the item id that published them."""
    decision = Decision()
    claimed: dict[str, str] = {}
    first_poll_published = 0
    for item in sorted(items, key=lambda i: i.published or now, reverse=True):
        digest = content_hash(item)
        seen = known.get(item.item_id)
        if seen is not None:
            if not seen.content_hash or seen.content_hash == digest:
                decision.counts["seen"] += 1
                continue
            revision = seen.revision + 1
            decision.publish.append(item.model_copy(update={"kind": "update", "revision": revision}))
            decision.remember.append(Remember(item.item_id, digest, revision))
            decision.counts["updated"] += 1
            continue
        owner = url_owners.get(item.canonical_url) or claimed.get(item.canonical_url)
        if item.canonical_url and owner and owner != item.item_id:
            decision.remember.append(Remember(item.item_id, digest, 1))
            decision.also_in.append(item.canonical_url)
            decision.counts["same_url"] += 1
            continue
        if first_poll and (
            (item.published is not None and item.published < now - backfill)
            or first_poll_published >= backfill_max
        ):
            decision.remember.append(Remember(item.item_id, digest, 1))
            decision.counts["backfill"] += 1
            continue
        first_poll_published += 1
        decision.publish.append(item)
        decision.remember.append(Remember(item.item_id, digest, 1))
        if item.canonical_url:
            claimed[item.canonical_url] = item.item_id
            decision.claims.append((item.canonical_url, item.item_id))
        decision.counts["new"] += 1
    decision.publish.reverse()  # oldest first, as they happened
    return decision
