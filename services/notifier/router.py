"""Routing one match to its subscriptions: once per story, on each subscriber's rhythm.

For each subscription of the match's topic, in one database transaction (then the Kafka
offset is committed; a crash before the commit replays the match, which finds its stories
recorded and does nothing):

1. an item this subscription already handled is a repeat (a redelivered match, or the
   same item matched by a second topic) — unless it is an update (``kind: update``, a
   higher revision) and the subscription asked for updates;
2. an item whose SimHash is within ``duplicate_distance`` bits of a story alerted to this
   subscription in the last ``duplicate_window`` is "also reported by" that story: recorded,
   not sent;
3. otherwise it is a story: digest mode queues it for the next scheduled digest; snooze
   and quiet hours hold it for one digest when they end; past ``max_per_hour`` it
   overflows into the next hourly digest; else it is queued for immediate delivery.

Delivery itself happens off this path (``dispatcher``), so a slow channel never holds up
the consumer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from newswatch.notifier.channels import channel_kind
from newswatch.notifier.fingerprint import fingerprint
from newswatch.notifier.store import NotifierStore, Routing, Subscription
from newswatch.shared.cadence import Cadence, parse_cadence, parse_quiet_hours, parse_zone
from newswatch.shared.config import NotifierSettings
from newswatch.shared.contract import Match, encode

#: Routing outcomes (bounded metric label values).
OUTCOMES = ("queued", "update", "digest", "held", "overflow", "duplicate", "repeat", "update_suppressed")
_HOURLY = Cadence("hourly")


def alert_id_for(subscription_id: str, item_id: str, revision: int = 1) -> str:
    """Stable per (subscription, item, revision): receivers dedup on it (``webhook-id``)."""
    key = f"{subscription_id}\x00{item_id}" + (f"\x00{revision}" if revision > 1 else "")
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Queued:
    """What a match queues: its encoded payload and its trace."""

    payload: str
    traceparent: str | None


class Router:
    def __init__(self, store: NotifierStore, settings: NotifierSettings) -> None:
        self._store = store
        self._settings = settings

    def route(
        self, match: Match, subscriptions: list[Subscription], traceparent: str | None = None
    ) -> dict[str, str]:
        """Outcome per subscription id; all recorded in one transaction, or none (StoreError).

        ``traceparent``: the match's trace, kept with each delivery it queues."""
        if not subscriptions:
            return {}
        item = match.item
        print_ = fingerprint(item)
        payload = encode(match).decode("utf-8")
        outcomes = {}
        with self._store.routing() as tx:
            for sub in subscriptions:
                outcomes[sub.id] = self._route_one(tx, sub, match, print_, Queued(payload, traceparent))
        return outcomes

    def _route_one(self, tx: Routing, sub: Subscription, match: Match, print_: int, queued: Queued) -> str:
        item = match.item
        source = item.source.feed_title or item.source.host
        known = tx.story(sub.id, item.item_id)
        if known is not None:
            if item.kind != "update" or item.revision <= known.revision:
                return "repeat"
            tx.add_story(
                sub.id, item.item_id, known.story_item_id, item.revision, print_, item.title, item.url, source
            )
            if not sub.spec.updates or known.story_item_id != item.item_id:
                return "update_suppressed"
            outcome = self._schedule(tx, sub, match, queued)
            return "update" if outcome == "queued" else outcome
        window_start = tx.now - self._settings.duplicate_window
        story = tx.nearest_story(sub.id, window_start, print_, self._settings.duplicate_distance)
        if story is not None:
            tx.add_story(
                sub.id, item.item_id, story.item_id, item.revision, print_, item.title, item.url, source
            )
            return "duplicate"
        tx.add_story(sub.id, item.item_id, item.item_id, item.revision, print_, item.title, item.url, source)
        return self._schedule(tx, sub, match, queued)

    def _schedule(self, tx: Routing, sub: Subscription, match: Match, queued: Queued) -> str:
        """Now, or in which digest: the subscription's mode, holds and rate limit decide."""
        item = match.item
        zone = parse_zone(sub.spec.timezone)
        now = datetime.fromtimestamp(tx.now, UTC)
        cadence = parse_cadence(sub.spec.mode)
        if not cadence.immediate:
            tx.queue_for_digest(
                sub.id, item.item_id, item.revision, cadence.next_after(now, zone).timestamp(), queued.payload
            )
            return "digest"
        held = _held_until(sub, now, zone)
        if held is not None:
            tx.queue_for_digest(sub.id, item.item_id, item.revision, held.timestamp(), queued.payload)
            return "held"
        limit = sub.spec.max_per_hour
        if limit is not None and tx.alerts_since(sub.id, tx.now - 3600.0) >= limit:
            tx.queue_for_digest(
                sub.id, item.item_id, item.revision, _HOURLY.next_after(now, zone).timestamp(), queued.payload
            )
            return "overflow"
        self._enqueue(tx, sub, match, queued, alert_id_for(sub.id, item.item_id, item.revision))
        return "queued"

    def _enqueue(self, tx: Routing, sub: Subscription, match: Match, queued: Queued, alert_id: str) -> None:
        tx.enqueue(
            alert_id,
            sub.id,
            "alert",
            channel_kind(sub.spec.to),
            queued.payload,
            topic_id=match.topic_id,
            item_id=match.item.item_id,
            published_at=match.item.fetched_at.timestamp(),
            traceparent=queued.traceparent,
        )


def _held_until(sub: Subscription, now: datetime, zone: tzinfo) -> datetime | None:
    """When a snooze or quiet hours holding ``now`` end, or None if alerts may go now."""
    until = now
    snooze = sub.spec.snooze_until
    if snooze is not None and snooze > until:
        until = snooze
    if sub.spec.quiet_hours:
        quiet = parse_quiet_hours(sub.spec.quiet_hours)
        until = quiet.ends_after(until, zone)
    return until if until > now else None
