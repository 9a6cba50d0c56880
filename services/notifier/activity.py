"""Matches per topic and hour: what the web app shows as a topic's last 24 hours and last
match. Every notifier replica sees every match of its partitions, so the counts add up
across replicas; one upsert per topic per batch; rows older than ``KEEP_HOURS`` pruned by ``prune``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from newswatch.notifier.schema import TOPIC_HOURS
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.db import insert_new, transaction

KEEP_HOURS = 48


@dataclass(frozen=True)
class TopicActivity:
    matches_24h: int
    last_match_at: float | None


class Activity:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    def record(self, topic_ids: Iterable[str]) -> None:
        """Counts one match for each id given (an id given twice counts twice)."""
        counts = Counter(topic_ids)
        if not counts:
            return
        now = self._clock.time()
        hour = int(now // 3600)
        with transaction(self._engine, "counting matches per topic") as conn:
            for topic_id, count in sorted(counts.items()):  # one order: no deadlock between replicas
                # The row first (another replica may make it at the same moment: the first
                # wins), then the increment: safe with any number of writers.
                insert_new(
                    conn,
                    TOPIC_HOURS,
                    {"topic_id": topic_id, "hour": hour, "matches": 0, "last_at": now},
                    ("topic_id", "hour"),
                )
                conn.execute(
                    TOPIC_HOURS.update()
                    .where(TOPIC_HOURS.c.topic_id == topic_id, TOPIC_HOURS.c.hour == hour)
                    .values(matches=TOPIC_HOURS.c.matches + count, last_at=now)
                )

    def prune(self) -> int:
        """Forgets hours older than ``KEEP_HOURS`` (the sender's housekeeping, not every batch)."""
        oldest = int(self._clock.time() // 3600) - KEEP_HOURS
        with transaction(self._engine, "pruning topic activity") as conn:
            return int(conn.execute(TOPIC_HOURS.delete().where(TOPIC_HOURS.c.hour < oldest)).rowcount or 0)

    def summary(self) -> dict[str, TopicActivity]:
        """Per topic: matches in the last 24 hours and the time of the last match."""
        since = int(self._clock.time() // 3600) - 23
        with transaction(self._engine, "reading topic activity") as conn:
            recent = dict(
                conn.execute(
                    select(TOPIC_HOURS.c.topic_id, func.sum(TOPIC_HOURS.c.matches))
                    .where(TOPIC_HOURS.c.hour >= since)
                    .group_by(TOPIC_HOURS.c.topic_id)
                ).all()
            )
            last = dict(
                conn.execute(
                    select(TOPIC_HOURS.c.topic_id, func.max(TOPIC_HOURS.c.last_at)).group_by(
                        TOPIC_HOURS.c.topic_id
                    )
                ).all()
            )
        return {
            topic_id: TopicActivity(int(recent.get(topic_id) or 0), float(at) if at is not None else None)
            for topic_id, at in last.items()
        }
