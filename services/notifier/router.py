"""Routing matches to their subscriptions: once per story, on each subscriber's rhythm.

A batch of matches is routed in one database transaction (then the Kafka offsets are
committed; a crash before the commit replays the batch, which finds its stories recorded
and queues nothing new). For each subscription of a match's topic:

1. an item this subscription already handled is a repeat (a redelivered match, or the
   same item matched by a second topic) — unless it is an update (``kind: update``, a
   higher revision) and the subscription asked for updates;
2. an item whose SimHash is within ``duplicate_distance`` bits of a story alerted to this
   subscription in the last ``duplicate_window`` is "also reported by" that story: recorded,
   not sent;
3. otherwise it is a story: digest mode queues it for the next scheduled digest; snooze
   and quiet hours hold it for one digest when they end; past ``max_per_hour`` it
   overflows into the next hourly digest; else it is queued for immediate delivery.

The reads of one match cover all its subscriptions at once (a fan-out to N subscriptions is
a few statements, not N transactions), and its writes are made before the next match is
read, so a batch sees its own earlier matches. A delivery to send now is queued already
leased and handed to the dispatcher after the commit (``Routed.handoff``), unless its
destination is waiting (circuit open) or the dispatcher is full: then it is queued due, and
the dispatcher claims it from the outbox like any other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from newswatch.notifier.destinations import destination_of
from newswatch.notifier.fingerprint import fingerprint
from newswatch.notifier.model import Delivery, Subscription, alert_id_for, channel_kind
from newswatch.notifier.outbox import DigestEntry, NewStory, Outbox, Routing
from newswatch.shared.cadence import Cadence, parse_cadence, parse_quiet_hours, parse_zone
from newswatch.shared.config import NotifierSettings
from newswatch.shared.contract import Match, encode

_HOURLY = Cadence("hourly")


@dataclass(frozen=True)
class Incoming:
    """A match to route, with its subscriptions and trace."""

    match: Match
    subscriptions: Sequence[Subscription]
    traceparent: str | None = None


@dataclass
class Routed:
    """What routing did with one match: an outcome per subscription, and the deliveries to
    hand to the dispatcher now (queued leased by this transaction)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    handoff: list[Delivery] = field(default_factory=list)


#: Asked per destination while routing: may a delivery to it be handed over directly?
Accepts = Callable[[str], bool]


def _never(_destination: str) -> bool:
    return False


class Router:
    def __init__(self, store: Outbox, settings: NotifierSettings, lease: float = 30.0) -> None:
        self._store = store
        self._settings = settings
        self._lease = lease

    def route(
        self, match: Match, subscriptions: Sequence[Subscription], traceparent: str | None = None
    ) -> dict[str, str]:
        """One match; outcome per subscription id (all recorded, or none: StoreError)."""
        return self.route_batch([Incoming(match, subscriptions, traceparent)])[0].outcomes

    def route_batch(self, batch: Sequence[Incoming], accepts: Accepts = _never) -> list[Routed]:
        """Every match of ``batch`` in one transaction; what each did, in order."""
        results: list[Routed] = []
        plans: list[_Plan] = []
        with self._store.routing() as tx:
            tx.prefetch([(s.id, i.match.item.item_id) for i in batch for s in i.subscriptions])
            for incoming in batch:
                routed, plan = (
                    self._route(tx, incoming, accepts) if incoming.subscriptions else (Routed(), None)
                )
                results.append(routed)
                if plan is not None:
                    plans.append(plan)
            inserted = tx.flush()
        for routed, plan in zip((r for r in results if r.outcomes), plans, strict=True):
            routed.handoff = [
                d for d in plan.deliveries if d.alert_id in inserted and d.next_attempt_at > tx.now
            ]
        return results

    def _route(self, tx: Routing, incoming: Incoming, accepts: Accepts) -> tuple[Routed, _Plan]:
        match = incoming.match
        item = match.item
        routed = Routed()
        plan = _Plan(tx, match, incoming.traceparent, fingerprint(item), accepts, self._lease, self._settings)
        subs = {s.id: s for s in incoming.subscriptions}
        known = {sub_id: story for sub_id in subs if (story := tx.story(sub_id, item.item_id)) is not None}
        fresh = [sub_id for sub_id in subs if sub_id not in known]
        near = {}
        if fresh:
            window_start = tx.now - self._settings.duplicate_window
            near = tx.nearest_stories(fresh, window_start, plan.print_, self._settings.duplicate_distance)
        for sub_id, sub in subs.items():
            story = known.get(sub_id)
            if story is not None:
                if item.kind != "update" or item.revision <= story.revision:
                    routed.outcomes[sub_id] = "repeat"
                    continue
                plan.story(sub_id, story.story_item_id)
                if not sub.spec.updates or story.story_item_id != item.item_id:
                    routed.outcomes[sub_id] = "update_suppressed"
                    continue
                outcome = plan.schedule(sub)
                routed.outcomes[sub_id] = "update" if outcome == "queued" else outcome
            elif sub_id in near:
                plan.story(sub_id, near[sub_id].item_id)
                routed.outcomes[sub_id] = "duplicate"
            else:
                plan.story(sub_id, item.item_id)
                routed.outcomes[sub_id] = plan.schedule(sub)
        tx.add(plan.stories, plan.deliveries, plan.digests)
        return routed, plan


class _Plan:
    """The writes one match's routing decides on, made together at its end."""

    def __init__(
        self,
        tx: Routing,
        match: Match,
        traceparent: str | None,
        print_: int,
        accepts: Accepts,
        lease: float,
        settings: NotifierSettings,
    ) -> None:
        self.tx = tx
        self.match = match
        self.traceparent = traceparent
        self.print_ = print_
        self.accepts = accepts
        self.lease = lease
        self.settings = settings
        item = match.item
        self.source = item.source.feed_title or item.source.host
        self.stories: list[NewStory] = []
        self.deliveries: list[Delivery] = []
        self.digests: list[DigestEntry] = []

    @functools.cached_property
    def payload(self) -> str:
        """The match as the outbox and digests keep it (encoded once, only if needed)."""
        return encode(self.match).decode("utf-8")

    def story(self, subscription_id: str, story_item_id: str) -> None:
        item = self.match.item
        self.stories.append(
            NewStory(
                subscription_id,
                item.item_id,
                story_item_id,
                item.revision,
                self.print_,
                item.title,
                item.url,
                self.source,
            )
        )

    def schedule(self, sub: Subscription) -> str:
        """Now, or in which digest: the subscription's mode, holds and rate limit decide."""
        tx, item = self.tx, self.match.item
        zone = parse_zone(sub.spec.timezone)
        now = datetime.fromtimestamp(tx.now, UTC)
        cadence = parse_cadence(sub.spec.mode)
        if not cadence.immediate:
            self._digest(sub, cadence.next_after(now, zone).timestamp())
            return "digest"
        held = _held_until(sub, now, zone)
        if held is not None:
            self._digest(sub, held.timestamp())
            return "held"
        limit = sub.spec.max_per_hour
        if limit is not None and tx.alerts_since(sub.id, tx.now - 3600.0) >= limit:
            self._digest(sub, _HOURLY.next_after(now, zone).timestamp())
            return "overflow"
        destination = destination_of(sub.spec.to, self.settings.smtp.host)
        due = tx.now + self.lease if self.accepts(destination) else tx.now
        self.deliveries.append(
            Delivery(
                alert_id=alert_id_for(sub.id, item.item_id, item.revision),
                subscription_id=sub.id,
                kind="alert",
                topic_id=self.match.topic_id,
                item_id=item.item_id,
                channel=channel_kind(sub.spec.to),
                status="pending",
                attempts=0,
                next_attempt_at=due,
                created_at=tx.now,
                published_at=item.fetched_at.timestamp(),
                delivered_at=None,
                failure=None,
                last_error=None,
                payload=self.payload,
                traceparent=self.traceparent,
                destination=destination,
            )
        )
        return "queued"

    def _digest(self, sub: Subscription, due_at: float) -> None:
        item = self.match.item
        self.digests.append(DigestEntry(sub.id, item.item_id, item.revision, due_at, self.payload))


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
