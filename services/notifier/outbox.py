"""The outbox and the delivery log (``nw_deliveries``), the dedup index (``nw_stories``) and
the digest queue (``nw_digest_entries``): what routing writes and the dispatcher works off.

- ``Routing``: a batch of matches routed in one transaction (the intake's side).
- ``Outbox``: the senders' side. A row is written, in the same transaction as its story,
  before the Kafka offset is committed; senders claim due rows with a lease (so a crashed
  sender's row is picked up again) and record the outcome. A digest delivery takes all of a
  subscription's waiting entries in one transaction. The API reads the delivery log here.

SQLAlchemy errors become StoreError (see ``shared.db.transaction``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, bindparam, case, delete, func, select, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import ColumnElement, Select

from newswatch.notifier.model import Delivery, Report, Story
from newswatch.notifier.schema import DELIVERIES, DIGEST_ENTRIES, STORIES, SUBSCRIPTIONS
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.db import bit_distance, insert_new, insert_new_many, transaction, upsert


def signed(value: int) -> int:
    """A 64-bit unsigned fingerprint as the signed BIGINT both databases store."""
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _stories() -> Select[Any]:
    """A select of the columns a Story is made of."""
    return select(STORIES.c.item_id, STORIES.c.story_item_id, STORIES.c.revision, STORIES.c.fingerprint)


def _story(row: Any) -> Story:
    return Story(row[0], row[1], row[2], unsigned(row[3]))


@dataclass(frozen=True)
class NewStory:
    subscription_id: str
    item_id: str
    story_item_id: str
    revision: int
    fingerprint: int
    title: str
    url: str
    source: str


@dataclass(frozen=True)
class DigestEntry:
    subscription_id: str
    item_id: str
    revision: int
    due_at: float
    payload: str


class Routing:
    """A batch of matches routed in one transaction: reads and writes of stories, outbox and
    digests.

    The batch's stories are read at once (``prefetch``); its writes are kept and made together
    at the end (``flush``). Meanwhile the batch sees its own decisions: the story and
    near-duplicate checks of a later match look at what the database holds *and* at the
    stories the earlier matches added, and the rate limit counts the alerts they queued.
    """

    def __init__(self, conn: Connection, now: float) -> None:
        self._conn = conn
        self.now = now
        self._known: dict[tuple[str, str], Story] = {}
        self._own: dict[str, list[NewStory]] = {}  # stories of their own added, by subscription
        self._stories: dict[tuple[str, str], NewStory] = {}
        self._deliveries: list[Delivery] = []
        self._digests: list[DigestEntry] = []
        self._queued: Counter[str] = Counter()

    def prefetch(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Reads the stories recorded for these (subscription, item) pairs, in one query each
        500 pairs."""
        statement = _statement(self._conn, "stories")
        wanted = list(dict.fromkeys(pairs))
        for start in range(0, len(wanted), 500):
            rows = self._conn.execute(statement, {"pairs": wanted[start : start + 500]})
            self._known.update({(row[0], row[1]): _story(row[1:]) for row in rows})

    def story(self, subscription_id: str, item_id: str) -> Story | None:
        """The story of (subscription, item) recorded before or earlier in this batch."""
        added = self._stories.get((subscription_id, item_id))
        if added is not None:
            return Story(added.item_id, added.story_item_id, added.revision, added.fingerprint)
        return self._known.get((subscription_id, item_id))

    def stories(self, item_id: str, subscription_ids: Sequence[str]) -> dict[str, Story]:
        """The stories already recorded for ``item_id``, by subscription."""
        self.prefetch([(sub, item_id) for sub in subscription_ids])
        return {sub: found for sub in subscription_ids if (found := self.story(sub, item_id)) is not None}

    def nearest_stories(
        self, subscription_ids: Sequence[str], since: float, fingerprint: int, within: int
    ) -> dict[str, Story]:
        """Per subscription, the story of its own (not a duplicate) first seen after ``since``
        whose fingerprint is nearest ``fingerprint``, if it differs in at most ``within`` bits
        (the earliest of equals). The database compares and returns one row per subscription
        (reading every story of the window into Python cost 31 ms a match at 5,000 stories);
        the stories this batch added are compared here."""
        found: dict[str, tuple[int, int, Story]] = {}  # sub → (distance, order, story)
        statement = _statement(self._conn, "nearest")
        for chunk in _chunks(subscription_ids):
            rows = self._conn.execute(
                statement, {"subs": chunk, "since": since, "fp": signed(fingerprint), "within": within}
            )
            for row in rows:
                story = _story(row[1:])
                found[row[0]] = (((story.fingerprint ^ fingerprint) & _BITS).bit_count(), 0, story)
        for sub in subscription_ids:
            for order, own in enumerate(self._own.get(sub, ()), start=1):  # later than any stored
                distance = ((own.fingerprint ^ fingerprint) & _BITS).bit_count()
                best = found.get(sub)
                if distance <= within and (best is None or distance < best[0]):
                    found[sub] = (
                        distance,
                        order,
                        Story(own.item_id, own.item_id, own.revision, own.fingerprint),
                    )
        return {sub: story for sub, (_d, _o, story) in found.items()}

    def alerts_since(self, subscription_id: str, since: float) -> int:
        """Immediate alerts queued for this subscription after ``since`` (the rate limit),
        those of this batch included."""
        count = self._conn.execute(
            _statement(self._conn, "alerts_since"), {"sub": subscription_id, "since": since}
        ).scalar_one()
        return int(count) + self._queued[subscription_id]

    def add(
        self, stories: Sequence[NewStory], deliveries: Sequence[Delivery], digests: Sequence[DigestEntry]
    ) -> None:
        """One match's decisions, written with the batch's at ``flush``."""
        for st in stories:
            self._stories[(st.subscription_id, st.item_id)] = st
            if st.story_item_id == st.item_id:
                self._own.setdefault(st.subscription_id, []).append(st)
        for delivery in deliveries:
            self._deliveries.append(delivery)
            if delivery.kind == "alert":
                self._queued[delivery.subscription_id] += 1
        self._digests += digests

    def write(
        self, stories: Sequence[NewStory], deliveries: Sequence[Delivery], digests: Sequence[DigestEntry]
    ) -> set[str]:
        """``add`` and ``flush`` at once."""
        self.add(stories, deliveries, digests)
        return self.flush()

    def flush(self) -> set[str]:
        """Writes what the batch decided; returns the alert ids of the deliveries this
        transaction inserted (a delivery that exists already, a redelivered match's, is kept)."""
        upsert(
            self._conn,
            STORIES,
            [
                {
                    "subscription_id": st.subscription_id,
                    "item_id": st.item_id,
                    "story_item_id": st.story_item_id,
                    "revision": st.revision,
                    "fingerprint": signed(st.fingerprint),
                    "title": st.title,
                    "url": st.url,
                    "source": st.source,
                    "seen_at": self.now,
                }
                for st in self._stories.values()
            ],
            ("subscription_id", "item_id"),
        )
        insert_new_many(
            self._conn,
            DIGEST_ENTRIES,
            [
                {
                    "subscription_id": entry.subscription_id,
                    "item_id": entry.item_id,
                    "revision": entry.revision,
                    "queued_at": self.now,
                    "due_at": entry.due_at,
                    "payload": entry.payload,
                }
                for entry in self._digests
            ],
            ("subscription_id", "item_id", "revision"),
            "item_id",
        )
        inserted = insert_new_many(
            self._conn, DELIVERIES, [_delivery_row(d) for d in self._deliveries], ("alert_id",), "alert_id"
        )
        for (sub, item), st in self._stories.items():
            self._known[(sub, item)] = Story(st.item_id, st.story_item_id, st.revision, st.fingerprint)
        self._stories, self._own, self._deliveries, self._digests = {}, {}, [], []
        self._queued.clear()
        return inserted

    def enqueue(self, delivery: Delivery) -> None:
        insert_new(self._conn, DELIVERIES, _delivery_row(delivery), ("alert_id",))

    def queue_for_digest(self, entry: DigestEntry) -> None:
        self.add([], [], [entry])
        self.flush()


_BITS = (1 << 64) - 1


def _statement(conn: Connection, name: str) -> Any:
    """The routing reads, built once per dialect (see ``shared.db._STATEMENTS``)."""
    key = (f"{conn.dialect.name}{conn.dialect.server_version_info}", name)
    found = _READS.get(key)
    if found is not None:
        return found
    if name == "stories":
        statement: Any = select(STORIES.c.subscription_id, *_stories().selected_columns).where(
            tuple_(STORIES.c.subscription_id, STORIES.c.item_id).in_(bindparam("pairs", expanding=True))
        )
    elif name == "alerts_since":
        statement = (
            select(func.count())
            .select_from(DELIVERIES)
            .where(
                DELIVERIES.c.subscription_id == bindparam("sub"),
                DELIVERIES.c.kind == "alert",
                DELIVERIES.c.created_at > bindparam("since"),
            )
        )
    else:
        distance = bit_distance(conn, STORIES.c.fingerprint, bindparam("fp", type_=BigInteger)).label(
            "distance"
        )
        near = (
            select(
                STORIES.c.subscription_id,
                *_stories().selected_columns,
                func.row_number()
                .over(partition_by=STORIES.c.subscription_id, order_by=(distance, STORIES.c.seen_at))
                .label("rank"),
            )
            .where(
                STORIES.c.subscription_id.in_(bindparam("subs", expanding=True)),
                STORIES.c.seen_at > bindparam("since"),
                STORIES.c.story_item_id == STORIES.c.item_id,
                distance <= bindparam("within"),
            )
            .subquery()
        )
        statement = select(
            near.c.subscription_id, near.c.item_id, near.c.story_item_id, near.c.revision, near.c.fingerprint
        ).where(near.c.rank == 1)
    _READS[key] = statement
    return statement


_READS: dict[tuple[str, str], Any] = {}


def _delivery_row(d: Delivery) -> dict[str, Any]:
    return {
        "alert_id": d.alert_id,
        "subscription_id": d.subscription_id,
        "kind": d.kind,
        "topic_id": d.topic_id,
        "item_id": d.item_id,
        "channel": d.channel,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "created_at": d.created_at,
        "published_at": d.published_at,
        "payload": d.payload,
        "traceparent": d.traceparent,
        "destination": d.destination or "",
    }


def _chunks(values: Sequence[str], size: int = 500) -> list[list[str]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


@dataclass(frozen=True)
class Outcome:
    """What became of one send, recorded with the others of its moment in one transaction."""

    alert_id: str
    status: str  # delivered, retry (pending again at ``next_attempt_at``), wait (no attempt), dead
    attempts: int
    next_attempt_at: float = 0.0
    failure: str | None = None
    error: str | None = None


class Outbox:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    # --- routing -----------------------------------------------------------------------

    @contextmanager
    def routing(self) -> Iterator[Routing]:
        """One transaction for one match: all of its subscriptions are routed, or none."""
        with transaction(self._engine, "routing a match") as conn:
            yield Routing(conn, self._clock.time())

    # --- outbox and delivery log --------------------------------------------------------

    def claim_due(
        self,
        limit: int,
        lease: float,
        blocked: Sequence[str] = (),
        per_destination: int | None = None,
        final_before: float | None = None,
        only: str | None = None,
    ) -> list[Delivery]:
        """Pending deliveries that are due, leased for ``lease`` seconds to this sender.

        The lease moves ``next_attempt_at`` forward, so another replica (or this one after a
        crash) takes the row again only once the lease has run out. Rows of the ``blocked``
        destinations (circuit open) are left where they are, except those created before
        ``final_before``, which get their last attempt; at most ``per_destination`` rows of
        one destination are taken, so one destination's backlog cannot fill the senders;
        ``only`` takes rows of that one destination (a probe). The returned rows carry the
        ``next_attempt_at`` they had before the lease.
        """
        now = self._clock.time()
        due: ColumnElement[bool] = (DELIVERIES.c.status == "pending") & (DELIVERIES.c.next_attempt_at <= now)
        if only is not None:
            due = due & (DELIVERIES.c.destination == only)
        elif blocked:
            open_ok: ColumnElement[bool] = DELIVERIES.c.destination.not_in(list(blocked))
            if final_before is not None:
                open_ok = open_ok | (DELIVERIES.c.created_at <= final_before)
            due = due & open_ok
        with transaction(self._engine, "claiming due deliveries") as conn:
            if per_destination is None:
                ids = (
                    select(DELIVERIES.c.alert_id)
                    .where(due)
                    .order_by(DELIVERIES.c.next_attempt_at)
                    .limit(limit)
                )
            else:
                oldest = (
                    select(
                        DELIVERIES.c.alert_id,
                        DELIVERIES.c.next_attempt_at,
                        func.row_number()
                        .over(partition_by=DELIVERIES.c.destination, order_by=DELIVERIES.c.next_attempt_at)
                        .label("n"),
                    )
                    .where(due)
                    .order_by(DELIVERIES.c.next_attempt_at)
                    .limit(max(limit * 20, 1000))  # bounds the window's work on a big backlog
                    .subquery()
                )
                ids = (
                    select(oldest.c.alert_id)
                    .where(oldest.c.n <= per_destination)
                    .order_by(oldest.c.next_attempt_at)
                    .limit(limit)
                )
            query = select(*DELIVERIES.c).where(DELIVERIES.c.alert_id.in_(ids))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = [Delivery(**row._mapping) for row in conn.execute(query)]
            if rows:
                conn.execute(
                    update(DELIVERIES)
                    .where(DELIVERIES.c.alert_id.in_([r.alert_id for r in rows]))
                    .values(next_attempt_at=now + lease)
                )
        rows.sort(key=lambda r: r.next_attempt_at)
        return rows

    def release(self, alert_ids: Sequence[str]) -> None:
        """Gives back leased rows that were not sent (a graceful stop): due again at once."""
        if not alert_ids:
            return
        with transaction(self._engine, "releasing unsent deliveries") as conn:
            conn.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.alert_id.in_(list(alert_ids)), DELIVERIES.c.status == "pending")
                .values(next_attempt_at=self._clock.time())
            )

    def extend_lease(self, alert_ids: Sequence[str], until: float) -> None:
        """Keeps rows a sender still holds (waiting for a free slot) leased until ``until``;
        a row whose next attempt is already later keeps it."""
        if not alert_ids:
            return
        later = case((DELIVERIES.c.next_attempt_at < until, until), else_=DELIVERIES.c.next_attempt_at)
        with transaction(self._engine, "extending leases") as conn:
            for start in range(0, len(alert_ids), 500):
                conn.execute(
                    update(DELIVERIES)
                    .where(
                        DELIVERIES.c.alert_id.in_(list(alert_ids[start : start + 500])),
                        DELIVERIES.c.status == "pending",
                    )
                    .values(next_attempt_at=later)
                )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """The outcomes of many sends in one transaction (one statement per kind of outcome)."""
        if not outcomes:
            return
        now = self._clock.time()
        by_status: dict[str, list[dict[str, Any]]] = {}
        for o in outcomes:
            by_status.setdefault(o.status, []).append(
                {
                    "b_id": o.alert_id,
                    "b_attempts": o.attempts,
                    "b_next": o.next_attempt_at,
                    "b_failure": o.failure,
                    "b_error": o.error,
                }
            )
        key = DELIVERIES.c.alert_id == bindparam("b_id")
        statements = {
            "delivered": update(DELIVERIES)
            .where(key)
            .values(status="delivered", attempts=bindparam("b_attempts"), delivered_at=now, last_error=None),
            "retry": update(DELIVERIES)
            .where(key)
            .values(
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"),
                failure=bindparam("b_failure"),
                last_error=bindparam("b_error"),
            ),
            "wait": update(DELIVERIES).where(key).values(next_attempt_at=bindparam("b_next")),
            "dead": update(DELIVERIES)
            .where(key)
            .values(
                status="dead",
                attempts=bindparam("b_attempts"),
                failure=bindparam("b_failure"),
                last_error=bindparam("b_error"),
            ),
        }
        with transaction(self._engine, f"recording {len(outcomes)} delivery outcome(s)") as conn:
            for status, params in by_status.items():
                conn.execute(statements[status], params)

    def delivered(self, alert_id: str, attempts: int) -> None:
        self.record([Outcome(alert_id, "delivered", attempts)])

    def dead(self, alert_id: str, attempts: int, failure: str, error: str) -> None:
        self.record([Outcome(alert_id, "dead", attempts, failure=failure, error=error)])

    def note(self, subscription_id: str, channel: str, status: str, text: str) -> None:
        """An event in a subscription's delivery log that is not a delivery (the recipient
        unsubscribed, the address confirmed): kind ``event``, never claimed or sent."""
        now = self._clock.time()
        with transaction(self._engine, f"noting {status} in the log of {subscription_id}") as conn:
            conn.execute(
                DELIVERIES.insert().values(
                    alert_id="ev" + uuid.uuid4().hex[:30],
                    subscription_id=subscription_id,
                    kind="event",
                    channel=channel,
                    status=status,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    failure=status,
                    last_error=text,
                    payload="{}",
                    destination="",
                )
            )

    def deliveries(
        self,
        owner: str | None = None,
        subscription_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        limit: int = 100,
        topic_id: str | None = None,
        until: float | None = None,
    ) -> list[Delivery]:
        """The delivery log, newest first; ``owner`` limits it to that owner's subscriptions
        (a subscription id is never another owner's, even after a delete: see ``catalog``)."""
        query = select(*DELIVERIES.c).order_by(DELIVERIES.c.created_at.desc()).limit(limit)
        if owner is not None:
            owned = select(SUBSCRIPTIONS.c.id).where(SUBSCRIPTIONS.c.owner == owner)
            query = query.where(DELIVERIES.c.subscription_id.in_(owned))
        if subscription_id is not None:
            query = query.where(DELIVERIES.c.subscription_id == subscription_id)
        if status is not None:
            query = query.where(DELIVERIES.c.status == status)
        if since is not None:
            query = query.where(DELIVERIES.c.created_at >= since)
        if until is not None:
            query = query.where(DELIVERIES.c.created_at < until)
        if topic_id is not None:
            query = query.where(DELIVERIES.c.topic_id == topic_id)
        with transaction(self._engine, "reading the delivery log") as conn:
            return [Delivery(**row._mapping) for row in conn.execute(query)]

    def depth(self) -> dict[str, int]:
        """Outbox depth (pending deliveries) and digest queue size, for the gauges."""
        with transaction(self._engine, "measuring queues") as conn:
            pending = conn.execute(
                select(func.count()).select_from(DELIVERIES).where(DELIVERIES.c.status == "pending")
            ).scalar_one()
            waiting = conn.execute(
                select(func.count()).select_from(DIGEST_ENTRIES).where(DIGEST_ENTRIES.c.digest_id.is_(None))
            ).scalar_one()
        return {"pending": int(pending), "digest": int(waiting)}

    def also_reported(self, subscription_id: str, item_ids: Sequence[str]) -> dict[str, list[Report]]:
        """Near-duplicates recorded for each of ``item_ids`` (stories of this subscription)."""
        found = self.also_reported_many([(subscription_id, i) for i in item_ids])
        return {item_id: reports for (_sub, item_id), reports in found.items()}

    def also_reported_many(self, stories: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Report]]:
        """Near-duplicates recorded for each (subscription, story item) pair, in one read."""
        if not stories:
            return {}
        found: dict[tuple[str, str], list[Report]] = {}
        with transaction(self._engine, "reading duplicates") as conn:
            for start in range(0, len(stories), 250):
                chunk = list(dict.fromkeys(stories[start : start + 250]))
                rows = conn.execute(
                    select(
                        STORIES.c.subscription_id,
                        STORIES.c.story_item_id,
                        STORIES.c.item_id,
                        STORIES.c.title,
                        STORIES.c.url,
                        STORIES.c.source,
                    )
                    .where(
                        tuple_(STORIES.c.subscription_id, STORIES.c.story_item_id).in_(chunk),
                        STORIES.c.item_id != STORIES.c.story_item_id,
                    )
                    .order_by(STORIES.c.seen_at)
                )
                for sub_id, story, item_id, title, url, source in rows:
                    found.setdefault((sub_id, story), []).append(Report(item_id, title, url, source))
        return found

    # --- digests -------------------------------------------------------------------------

    def due_digests(self) -> list[str]:
        """Subscriptions with digest entries whose time has come."""
        with transaction(self._engine, "finding due digests") as conn:
            rows = conn.execute(
                select(DIGEST_ENTRIES.c.subscription_id)
                .where(DIGEST_ENTRIES.c.digest_id.is_(None), DIGEST_ENTRIES.c.due_at <= self._clock.time())
                .distinct()
            )
            return [r[0] for r in rows]

    def take_digest(self, subscription_id: str, digest_id: str, channel: str, destination: str = "") -> int:
        """Moves every waiting entry of the subscription into one digest delivery.

        One transaction: the entries are marked with the digest's id and the delivery is
        queued together, so a crash leaves either both or neither.
        """
        now = self._clock.time()
        with transaction(self._engine, f"building digest {digest_id}") as conn:
            query = (
                select(DIGEST_ENTRIES.c.item_id, DIGEST_ENTRIES.c.revision, DIGEST_ENTRIES.c.payload)
                .where(
                    DIGEST_ENTRIES.c.subscription_id == subscription_id,
                    DIGEST_ENTRIES.c.digest_id.is_(None),
                )
                .order_by(DIGEST_ENTRIES.c.queued_at)
            )
            if conn.dialect.name == "postgresql":
                # Two replicas building the same digest: the second waits for the first's
                # locks, then finds the entries taken (SQLite serializes writers already).
                query = query.with_for_update()
            rows = conn.execute(query).all()
            if not rows:
                return 0
            conn.execute(
                update(DIGEST_ENTRIES)
                .where(
                    DIGEST_ENTRIES.c.subscription_id == subscription_id,
                    tuple_(DIGEST_ENTRIES.c.item_id, DIGEST_ENTRIES.c.revision).in_(
                        [(r[0], r[1]) for r in rows]
                    ),
                )
                .values(digest_id=digest_id)
            )
            Routing(conn, now).enqueue(
                Delivery(
                    alert_id=digest_id,
                    subscription_id=subscription_id,
                    kind="digest",
                    topic_id=None,
                    item_id=None,
                    channel=channel,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    published_at=None,
                    delivered_at=None,
                    failure=None,
                    last_error=None,
                    payload=json.dumps([json.loads(r[2]) for r in rows], ensure_ascii=False),
                    destination=destination,
                )
            )
        return len(rows)

    def prune(self, stories_before: float, log_before: float) -> int:
        """Forgets stories older than the dedup window and finished deliveries older than
        the log's retention; returns rows deleted."""
        with transaction(self._engine, "pruning old state") as conn:
            gone = conn.execute(delete(STORIES).where(STORIES.c.seen_at < stories_before)).rowcount
            gone += conn.execute(
                delete(DELIVERIES).where(
                    DELIVERIES.c.status != "pending", DELIVERIES.c.created_at < log_before
                )
            ).rowcount
            gone += conn.execute(
                delete(DIGEST_ENTRIES).where(
                    DIGEST_ENTRIES.c.digest_id.is_not(None), DIGEST_ENTRIES.c.queued_at < log_before
                )
            ).rowcount
        return int(gone)
