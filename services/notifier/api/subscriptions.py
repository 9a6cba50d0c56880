"""``/subscriptions``: an owner's own subscriptions (another owner's look like none)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from newswatch.notifier.api.context import ApiContext, Caller, Context, unprocessable
from newswatch.notifier.errors import IdTakenError
from newswatch.notifier.model import Subscription
from newswatch.shared.config import ID_PATTERN, SubscriptionConfig

router = APIRouter(tags=["subscriptions"])
SubscriptionId = Annotated[str, Path(pattern=ID_PATTERN)]


def view(sub: Subscription, with_secret: bool = False) -> dict[str, Any]:
    body = sub.spec.model_dump(mode="json", exclude={"secret"})
    body["owner"] = sub.owner
    if with_secret:
        body["secret"] = sub.secret
    return body


def check_topics(ctx: ApiContext, topics: Sequence[str], extra: set[str], loc: list[str | int]) -> None:
    known = {t[0] for t in ctx.db.catalog.topics()} | extra
    missing = [t for t in topics if t not in known]
    if missing:
        raise unprocessable(loc, f"unknown topic(s) {missing}")


def owned(ctx: ApiContext, subscription_id: str, owner: str) -> Subscription:
    sub = ctx.db.catalog.subscription(subscription_id)
    if sub is None or sub.owner != owner:  # another owner's looks like none at all
        raise HTTPException(404, f"no subscription {subscription_id!r}")
    return sub


def save(ctx: ApiContext, spec: SubscriptionConfig, owner: str) -> Subscription:
    """Store a subscription; 409 when its id is (or was) another owner's, 403 past the cap."""
    current = ctx.db.catalog.subscription(spec.id)
    cap = ctx.config.notifier.max_subscriptions_per_owner
    if (current is None or current.owner != owner) and len(ctx.db.catalog.subscriptions(owner)) >= cap:
        raise HTTPException(
            403, f"{owner!r} has {cap} subscriptions, the most allowed (notifier.max_subscriptions_per_owner)"
        )
    try:
        saved = ctx.db.catalog.put_subscription(spec, owner)
    except IdTakenError as exc:
        raise HTTPException(409, f"{exc}; choose another") from exc
    ctx.routes.invalidate()
    return saved


@router.get("/subscriptions")
def list_subscriptions(who: Caller, ctx: Context) -> list[dict[str, Any]]:
    return [view(s) for s in ctx.db.catalog.subscriptions(owner=who.owner)]


@router.get("/subscriptions/{subscription_id}")
def get_subscription(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, Any]:
    return view(owned(ctx, subscription_id, who.owner))


@router.post("/subscriptions", status_code=201)
def create_subscription(body: SubscriptionConfig, who: Caller, ctx: Context) -> dict[str, Any]:
    """Creates a subscription; the response carries its webhook secret, shown once."""
    if ctx.db.catalog.subscription(body.id) is not None and ctx.db.catalog.holder(body.id) == who.owner:
        raise HTTPException(409, f"subscription {body.id!r} exists; PUT /subscriptions/{body.id} changes it")
    check_topics(ctx, body.topics, set(), ["body", "topics"])
    ctx.check_destination(body.to, ["body", "to"])
    return view(save(ctx, body, who.owner), with_secret=True)


@router.put("/subscriptions/{subscription_id}")
def put_subscription(
    subscription_id: SubscriptionId, body: SubscriptionConfig, who: Caller, ctx: Context
) -> dict[str, Any]:
    if body.id != subscription_id:
        raise unprocessable(["body", "id"], f"id {body.id!r} differs from the path's {subscription_id!r}")
    existing = ctx.db.catalog.subscription(subscription_id)
    if existing is not None and existing.owner != who.owner:
        raise HTTPException(404, f"no subscription {subscription_id!r}")
    check_topics(ctx, body.topics, set(), ["body", "topics"])
    ctx.check_destination(body.to, ["body", "to"])
    return view(save(ctx, body, who.owner), with_secret=existing is None)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> None:
    """Deletes it, and the matches waiting for its digest; its id stays the owner's."""
    owned(ctx, subscription_id, who.owner)
    ctx.db.catalog.delete_subscription(subscription_id)
    ctx.routes.invalidate()
