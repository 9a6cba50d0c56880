"""Queries against news already seen: the topic test bench and backfill.

Both read the items retained on ``newswatch.items`` (no consumer group, so the matchers'
offsets are untouched) from the beginning up to the consumer's highwater, and keep those
whose Kafka timestamp is within ``since``. ``test`` only reports; ``backfill`` publishes the
matches of new topics to ``newswatch.matches`` once, so subscribers get recent stories too
(the notifier's delivery log drops any it already sent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from newswatch.matcher.document import Document
from newswatch.matcher.topics import Compiler, Topic
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ITEMS, MATCHES, Item, Match, MatchReason, decode, encode
from newswatch.shared.errors import ContractError
from newswatch.shared.kafka_client import make_consumer, publish_once
from newswatch.shared.kafka_io import Record
from newswatch.shared.table import read_to_end


@dataclass(frozen=True)
class Recent:
    items: list[Item]
    read: int  # records read on newswatch.items
    skipped: int  # records that were not valid items
    stamps: list[float]  # each item's Kafka timestamp (seconds), in the order of ``items``


def recent_items(
    bootstrap: str,
    settings: KafkaSettings,
    since: float,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Recent:
    """Items published on newswatch.items within the last ``since`` seconds (latest revision)."""
    cutoff_ms = (clock() - since) * 1000
    latest: dict[str, tuple[float, Item]] = {}
    counts = {"read": 0, "skipped": 0}

    def collect(records: list[Any]) -> None:
        for record in records:
            counts["read"] += 1
            if record.timestamp < cutoff_ms or record.value is None:
                continue
            try:
                item = decode(Item, record.value)
            except ContractError:
                counts["skipped"] += 1
                continue
            latest[item.item_id] = (record.timestamp / 1000, item)  # a later revision replaces it

    stop = stop or threading.Event()
    read_to_end(make_consumer(bootstrap, settings, None, "newswatch-replay"), ITEMS, stop, collect)
    return Recent(
        [item for _at, item in latest.values()],
        counts["read"],
        counts["skipped"],
        [at for at, _item in latest.values()],
    )


def evaluate(compiler: Compiler, topic: Topic, items: Sequence[Item]) -> list[tuple[Item, MatchReason]]:
    """The items ``topic`` matches, best first (score, then newest)."""
    hits = []
    for item in items:
        reason = compiler.explain(topic, Document.from_item(item))
        if reason is not None:
            hits.append((item, reason))
    hits.sort(key=lambda h: (h[1].score, h[0].published or h[0].fetched_at), reverse=True)
    return hits


def backfill(
    bootstrap: str,
    settings: KafkaSettings,
    compiler: Compiler,
    topics: Sequence[Topic],
    items: Sequence[Item],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    for_owner: str | None = None,
) -> int:
    """Publish the matches of ``topics`` among ``items`` to newswatch.matches; returns how many.
    ``for_owner``: only that owner's subscriptions get them (a backfill never alerts others)."""
    records = [
        Record(
            MATCHES,
            topic.id,
            encode(
                Match(
                    topic_id=topic.id,
                    query=topic.query,
                    item=item,
                    reason=reason,
                    matched_at=now(),
                    for_owner=for_owner,
                )
            ),
        )
        for topic in topics
        for item, reason in evaluate(compiler, topic, items)
    ]
    if records:
        publish_once(bootstrap, settings, records, "newswatch-backfill")
    return len(records)


def highlighted(reason: MatchReason, mark: tuple[str, str] = ("**", "**")) -> str:
    """The reason's snippet with its hits marked (Markdown bold by default)."""
    out, last = [], 0
    for start, end in reason.highlights:
        out += [reason.snippet[last:start], mark[0], reason.snippet[start:end], mark[1]]
        last = end
    out.append(reason.snippet[last:])
    return "".join(out)
