"""Settle the publish journal at start-up: find out what a killed fetcher really published.

Reads ``newswatch.items`` from the lowest floor of the pending batches up to the
consumer's highwater (not the broker's end offsets), collects which of the journaled
(item_id, revision) pairs are there, and records each batch accordingly. See ``pending``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.pending import PendingBatch, settle
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.errors import KafkaUnavailableError
from newswatch.shared.table import TableReader

log = logging.getLogger(__name__)

#: Batches of feeds this replica does not poll are settled too once this old: their
#: feed was removed or moved to another replica, and nobody else would settle them.
ORPHAN_AGE = 600.0


def floors_of(batches: Iterable[PendingBatch]) -> dict[int, int]:
    """Per partition, the lowest offset any batch's records can have (0 where unknown)."""
    batches = list(batches)
    partitions = {p for b in batches for p in b.floors}
    return {p: min(b.floors.get(p, 0) for b in batches) for p in partitions} if batches else {}


def scan(
    reader: TableReader, floors: dict[int, int], wanted: set[tuple[str, int]], stop: threading.Event
) -> set[tuple[str, int]]:
    """The pairs of ``wanted`` present in newswatch.items from ``floors`` to the highwater."""
    ids = {item_id.encode("utf-8") for item_id, _ in wanted}
    found: set[tuple[str, int]] = set()

    def collect(records: list[Any]) -> None:
        for record in records:
            if record.key not in ids or record.value is None:
                continue
            try:
                revision = int(json.loads(record.value).get("revision", 1))
            except (ValueError, AttributeError, TypeError):
                continue  # not a valid item: it cannot be one of ours
            pair = (record.key.decode("utf-8"), revision)
            if pair in wanted:
                found.add(pair)

    reader.assign(stop, start=floors)
    reader.catch_up(stop, collect)
    return found


def settle_journal(
    store: FetcherStore,
    make_reader: Callable[[], TableReader],
    mine: Iterable[str],
    metrics: FetcherMetrics,
    stop: threading.Event,
    clock: Clock = SYSTEM,
    retry: float = 2.0,
) -> int:
    """Settle the pending batches of ``mine`` (and orphans); retried until done or stopped.

    Returns the number of batches settled. The fetcher does not poll before this is done:
    a feed polled with its batch unsettled would publish its items again.
    """
    owned = set(mine)
    batches = [
        b for b in store.pending_batches() if b.feed_url in owned or b.created_at < clock.time() - ORPHAN_AGE
    ]
    if not batches:
        return 0
    wanted = {pair for b in batches for pair in b.publish}
    floors = floors_of(batches)
    log.info(
        "settling the publish journal of an interrupted run",
        extra={"batches": len(batches), "items": len(wanted), "floors": floors},
    )
    while not stop.is_set():
        reader = make_reader()
        try:
            found = scan(reader, floors, wanted, stop)
            break
        except KafkaUnavailableError as exc:
            log.warning(
                "could not read newswatch.items to settle the journal; retrying", extra={"error": str(exc)}
            )
            stop.wait(retry)
        finally:
            reader.close()
    else:
        return 0
    for batch in batches:
        settled = settle(batch, found)
        store.settle(batch, settled)
        metrics.journal_items.labels("published").inc(settled.published)
        metrics.journal_items.labels("not_published").inc(settled.not_published)
        log.info(
            "settled a journaled batch",
            extra={
                "feed": batch.feed_url,
                "published": settled.published,
                "not_published": settled.not_published,
            },
        )
    return len(batches)
