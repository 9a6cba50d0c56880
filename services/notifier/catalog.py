"""Topics and subscriptions as the API and the config manage them (the database is their
source of truth).

Ids are unique forever and belong to one owner forever: deleting a topic or a subscription
leaves a tombstone, and only the owner who had the id may use it again. So nothing of one
owner is ever visible to, or inherited by, another (a recreated subscription id would
otherwise show the first owner's delivery log, with its webhook URL, and receive its
pending digests). Deleting a subscription also drops its waiting digest entries.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine

from newswatch.notifier.errors import IdTakenError
from newswatch.notifier.model import Subscription
from newswatch.notifier.schema import DIGEST_ENTRIES, SUBSCRIPTIONS, TOPICS
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import SubscriptionConfig
from newswatch.shared.db import transaction, upsert

#: A subscription's states: routed to; held by its owner; waiting for its address to confirm;
#: left by its recipient (the unsubscribe link: kept, so a config file cannot revive it).
STATUSES = ("active", "paused", "pending", "unsubscribed")


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Catalog:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    # --- topics --------------------------------------------------------------------------

    def put_topic(self, topic_id: str, query: str, owner: str) -> None:
        """Create or change a topic; IdTakenError if the id is (or was) another owner's."""
        with transaction(self._engine, f"saving topic {topic_id}") as conn:
            holder = conn.execute(select(TOPICS.c.owner).where(TOPICS.c.id == topic_id)).scalar_one_or_none()
            if holder is not None and holder != owner:
                raise IdTakenError(f"topic id {topic_id!r} is taken")
            upsert(
                conn,
                TOPICS,
                [
                    {
                        "id": topic_id,
                        "owner": owner,
                        "query": query,
                        "updated_at": self._clock.time(),
                        "deleted_at": None,
                    }
                ],
                ("id",),
            )

    def topic(self, topic_id: str) -> tuple[str, str] | None:
        """(query, owner) of a live topic, or None."""
        with transaction(self._engine, "reading a topic") as conn:
            row = conn.execute(
                select(TOPICS.c.query, TOPICS.c.owner).where(
                    TOPICS.c.id == topic_id, TOPICS.c.deleted_at.is_(None)
                )
            ).first()
        return None if row is None else (row[0], row[1])

    def topics(self) -> list[tuple[str, str, str]]:
        """Every live topic as (id, query, owner): topics are shared, any owner may subscribe."""
        with transaction(self._engine, "listing topics") as conn:
            rows = conn.execute(
                select(TOPICS.c.id, TOPICS.c.query, TOPICS.c.owner)
                .where(TOPICS.c.deleted_at.is_(None))
                .order_by(TOPICS.c.id)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def count_topics(self, owner: str) -> int:
        with transaction(self._engine, "counting topics") as conn:
            return int(
                conn.execute(
                    select(func.count()).where(TOPICS.c.owner == owner, TOPICS.c.deleted_at.is_(None))
                ).scalar_one()
            )

    def delete_topic(self, topic_id: str) -> bool:
        """Tombstones a live topic; False if there was none."""
        with transaction(self._engine, f"deleting topic {topic_id}") as conn:
            now = self._clock.time()
            done = conn.execute(
                update(TOPICS)
                .where(TOPICS.c.id == topic_id, TOPICS.c.deleted_at.is_(None))
                .values(deleted_at=now, updated_at=now)
            )
            return done.rowcount > 0

    # --- subscriptions -------------------------------------------------------------------

    def put_subscription(
        self, spec: SubscriptionConfig, owner: str, status: str | None = None
    ) -> Subscription:
        """Create or replace; IdTakenError if the id is (or was) another owner's. The secret is
        the spec's, else the one of this owner's live subscription, else a new one; the status
        is ``status``, else the live subscription's, else active."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with transaction(self._engine, f"saving subscription {spec.id}") as conn:
            stored = conn.execute(
                select(
                    SUBSCRIPTIONS.c.owner,
                    SUBSCRIPTIONS.c.secret,
                    SUBSCRIPTIONS.c.deleted_at,
                    SUBSCRIPTIONS.c.status,
                ).where(SUBSCRIPTIONS.c.id == spec.id)
            ).first()
            if stored is not None and stored[0] != owner:
                raise IdTakenError(f"subscription id {spec.id!r} is taken")
            live = stored is not None and stored[2] is None  # a deleted one's secret is not reused
            secret = spec.secret.get_secret_value() if spec.secret else None
            secret = secret or (stored[1] if stored is not None and live else None) or new_secret()
            status = status or (stored[3] if stored is not None and live else None) or "active"
            upsert(
                conn,
                SUBSCRIPTIONS,
                [
                    {
                        "id": spec.id,
                        "owner": owner,
                        "spec": spec.model_dump_json(exclude={"secret"}),
                        "secret": secret,
                        "updated_at": self._clock.time(),
                        "deleted_at": None,
                        "status": status,
                    }
                ],
                ("id",),
            )
        return Subscription(spec, owner, secret, status)

    def set_status(self, subscription_id: str, status: str) -> bool:
        """Pause, resume or confirm a live subscription; False if there is none."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with transaction(self._engine, f"setting the status of subscription {subscription_id}") as conn:
            done = conn.execute(
                update(SUBSCRIPTIONS)
                .where(SUBSCRIPTIONS.c.id == subscription_id, SUBSCRIPTIONS.c.deleted_at.is_(None))
                .values(status=status, updated_at=self._clock.time())
            )
            return done.rowcount > 0

    def holder(self, subscription_id: str) -> str | None:
        """The owner an id belongs to (live or deleted), or None if nobody ever used it."""
        with transaction(self._engine, "reading a subscription's owner") as conn:
            found: str | None = conn.execute(
                select(SUBSCRIPTIONS.c.owner).where(SUBSCRIPTIONS.c.id == subscription_id)
            ).scalar_one_or_none()
        return found

    def subscription(self, subscription_id: str) -> Subscription | None:
        with transaction(self._engine, "reading a subscription") as conn:
            row = conn.execute(
                select(*_SUBSCRIPTION_COLUMNS).where(
                    SUBSCRIPTIONS.c.id == subscription_id, SUBSCRIPTIONS.c.deleted_at.is_(None)
                )
            ).first()
        return None if row is None else _subscription(row)

    def subscriptions(self, owner: str | None = None) -> list[Subscription]:
        query = (
            select(*_SUBSCRIPTION_COLUMNS)
            .where(SUBSCRIPTIONS.c.deleted_at.is_(None))
            .order_by(SUBSCRIPTIONS.c.id)
        )
        if owner is not None:
            query = query.where(SUBSCRIPTIONS.c.owner == owner)
        with transaction(self._engine, "listing subscriptions") as conn:
            return [_subscription(row) for row in conn.execute(query)]

    def delete_subscription(self, subscription_id: str) -> bool:
        """Tombstones a live subscription and drops the matches waiting for its digest."""
        with transaction(self._engine, f"deleting subscription {subscription_id}") as conn:
            now = self._clock.time()
            done = conn.execute(
                update(SUBSCRIPTIONS)
                .where(SUBSCRIPTIONS.c.id == subscription_id, SUBSCRIPTIONS.c.deleted_at.is_(None))
                .values(deleted_at=now, updated_at=now)
            )
            conn.execute(
                delete(DIGEST_ENTRIES).where(
                    DIGEST_ENTRIES.c.subscription_id == subscription_id, DIGEST_ENTRIES.c.digest_id.is_(None)
                )
            )
            return done.rowcount > 0

    def version(self) -> tuple[int, float]:
        """Changes to subscriptions (count, latest change): replicas reload routes when it moves."""
        with transaction(self._engine, "reading the subscription version") as conn:
            row = conn.execute(select(func.count(), func.max(SUBSCRIPTIONS.c.updated_at))).one()
        return int(row[0]), float(row[1] or 0.0)


_SUBSCRIPTION_COLUMNS = (
    SUBSCRIPTIONS.c.spec,
    SUBSCRIPTIONS.c.owner,
    SUBSCRIPTIONS.c.secret,
    SUBSCRIPTIONS.c.status,
)


def _subscription(row: Any) -> Subscription:
    spec = SubscriptionConfig.model_validate_json(row[0])
    return Subscription(spec, row[1], row[2], row[3])
