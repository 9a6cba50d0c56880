"""The publish journal: what a poll is about to publish, written down before it is sent.

A fetcher killed after Kafka acknowledged a poll's items but before it recorded them as
seen would publish them again on restart. So, before publishing, the poll writes a
*pending batch*: the items it will publish, everything it will remember afterwards, and a
floor per partition of ``newswatch.items`` below which none of its records can land (the
offsets last acknowledged before the batch was written). The batch is deleted in the same
transaction that records the items as seen. On start-up, a pending batch is settled by
reading ``newswatch.items`` from its floors: the items found there were published and are
remembered; the others were not and will be published by the feed's next poll.

This module is the pure part (the batch, its encoding, settling); the store persists it
and ``recovery`` reads Kafka.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from newswatch.fetcher.dedup import Decision, Remember


@dataclass(frozen=True)
class PendingBatch:
    batch_id: str
    feed_url: str
    floors: dict[int, int]  # partition → first offset the batch's records can have
    publish: tuple[tuple[str, int], ...]  # (item_id, revision) of each record, in send order
    remember: tuple[Remember, ...]
    claims: tuple[tuple[str, str], ...] = ()
    also_in: tuple[str, ...] = ()
    created_at: float = 0.0

    @classmethod
    def of(cls, batch_id: str, feed_url: str, floors: dict[int, int], decision: Decision) -> PendingBatch:
        return cls(
            batch_id,
            feed_url,
            dict(floors),
            tuple((item.item_id, item.revision) for item in decision.publish),
            tuple(decision.remember),
            tuple(decision.claims),
            tuple(decision.also_in),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "publish": [list(p) for p in self.publish],
                "remember": [[r.item_id, r.content_hash, r.revision] for r in self.remember],
                "claims": [list(c) for c in self.claims],
                "also_in": list(self.also_in),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_row(
        cls, batch_id: str, feed_url: str, floors: str, body: str, created_at: float
    ) -> PendingBatch:
        data = json.loads(body)
        return cls(
            batch_id,
            feed_url,
            {int(p): int(o) for p, o in json.loads(floors).items()},
            tuple((str(i), int(r)) for i, r in data["publish"]),
            tuple(Remember(str(i), str(h), int(r)) for i, h, r in data["remember"]),
            tuple((str(u), str(i)) for u, i in data["claims"]),
            tuple(str(u) for u in data["also_in"]),
            created_at,
        )

    def floors_json(self) -> str:
        return json.dumps({str(p): o for p, o in self.floors.items()})


@dataclass(frozen=True)
class Settled:
    """What to record for a batch once it is known which of its records reached Kafka."""

    remember: list[Remember] = field(default_factory=list)
    claims: list[tuple[str, str]] = field(default_factory=list)
    also_in: list[str] = field(default_factory=list)
    published: int = 0
    not_published: int = 0


def settle(batch: PendingBatch, found: set[tuple[str, int]]) -> Settled:
    """Keep what the batch decided, except for the items that never reached Kafka.

    Those are not remembered (so the next poll publishes them) and their URL claims are
    dropped (so they are not taken for duplicates of themselves). Skipped entries (seen,
    backfill, same URL) are remembered as decided.
    """
    lost = {p for p in batch.publish if p not in found}
    lost_ids = {item_id for item_id, _ in lost}
    return Settled(
        [r for r in batch.remember if (r.item_id, r.revision) not in lost],
        [c for c in batch.claims if c[1] not in lost_ids],
        list(batch.also_in),
        len(batch.publish) - len(lost),
        len(lost),
    )
