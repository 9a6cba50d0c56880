"""``/subscriptions``: an owner's own subscriptions (another owner's look like none).

A subscription to an email address made here is ``pending`` until that address confirms it
(double opt-in): the confirmation link is mailed at once and works for
``notifier.confirm_within``. Config-file subscriptions are the operator's and need none.
The helpers (``save``, ``set_paused``, ``send_test``, ``feed_urls``) serve the web app too.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from newswatch.notifier.api.context import ApiContext, Caller, Context, unprocessable
from newswatch.notifier.errors import DeliveryError, IdTakenError
from newswatch.notifier.model import Subscription, channel_kind
from newswatch.shared.config import ID_PATTERN, SubscriptionConfig
from newswatch.shared.contract import Item, Match, MatchReason, Source

router = APIRouter(tags=["subscriptions"])
SubscriptionId = Annotated[str, Path(pattern=ID_PATTERN)]


@dataclass(frozen=True)
class Saved:
    subscription: Subscription
    #: For a new or changed email address: "sent", or why the confirmation was not sent.
    confirmation: str | None = None


def view(sub: Subscription, with_secret: bool = False) -> dict[str, Any]:
    body = sub.spec.model_dump(mode="json", exclude={"secret"})
    body["owner"] = sub.owner
    body["status"] = sub.status
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


def address(sub: Subscription) -> str:
    return sub.spec.to.removeprefix("mailto:").split("?", 1)[0]


def save(ctx: ApiContext, spec: SubscriptionConfig, owner: str) -> Saved:
    """Store a subscription; 409 when its id is (or was) another owner's, 403 past the cap. A
    new email address makes it pending and mails the address its confirmation link."""
    current = ctx.db.catalog.subscription(spec.id)
    cap = ctx.config.notifier.max_subscriptions_per_owner
    if (current is None or current.owner != owner) and len(ctx.db.catalog.subscriptions(owner)) >= cap:
        raise HTTPException(
            403, f"{owner!r} has {cap} subscriptions, the most allowed (notifier.max_subscriptions_per_owner)"
        )
    unconfirmed = channel_kind(spec.to) == "email" and (
        current is None or current.spec.to != spec.to or current.status in ("pending", "unsubscribed")
    )
    try:
        saved = ctx.db.catalog.put_subscription(spec, owner, "pending" if unconfirmed else None)
    except IdTakenError as exc:
        raise HTTPException(409, f"{exc}; choose another") from exc
    ctx.routes.invalidate()
    return Saved(saved, ask_to_confirm(ctx, saved) if unconfirmed else None)


def ask_to_confirm(ctx: ApiContext, sub: Subscription) -> str:
    """Mails the subscription's address its confirmation link; "sent", or why not."""
    if ctx.mailer is None:
        ctx.count("confirmation_not_sent")
        return "not sent: the notifier has no mail server"
    lifetime = ctx.config.notifier.confirm_within
    secret = ctx.db.links.issue("confirm", sub.id, lifetime)
    link = f"{ctx.public_url()}/confirm/{secret}"
    message = EmailMessage()
    message["Subject"] = f"Confirm your newswatch alerts: {', '.join(sub.spec.topics)}"
    message["To"] = address(sub)
    message.set_content(
        f"Someone (we hope you) asked newswatch to send alerts about {', '.join(sub.spec.topics)} "
        f"to this address.\n\nTo start them, open this link and press Confirm:\n\n  {link}\n\n"
        f"It works for {lifetime / 3600:g} hours. If you did not ask for this, ignore this email: "
        "nothing will be sent.\n"
    )
    try:
        ctx.mailer.send(message, address(sub))
    except DeliveryError as exc:
        ctx.count("confirmation_not_sent")
        return f"not sent: {exc}"
    ctx.count("confirmation_mailed")
    return "sent"


def set_paused(ctx: ApiContext, sub: Subscription, paused: bool) -> Saved:
    """Pause, or resume: an email subscription whose recipient left (or never confirmed) asks
    its address again instead of resuming."""
    if paused:
        if sub.status == "pending":
            raise HTTPException(409, f"subscription {sub.id!r} is waiting for its address to confirm it")
        ctx.db.catalog.set_status(sub.id, "paused")
        status, confirmation = "paused", None
    elif channel_kind(sub.spec.to) == "email" and sub.status in ("pending", "unsubscribed"):
        ctx.db.catalog.set_status(sub.id, "pending")
        status, confirmation = "pending", ask_to_confirm(ctx, sub)
    else:
        ctx.db.catalog.set_status(sub.id, "active")
        status, confirmation = "active", None
    ctx.routes.invalidate()
    return Saved(Subscription(sub.spec, sub.owner, sub.secret, status), confirmation)


def test_match(ctx: ApiContext, sub: Subscription) -> Match:
    """A made-up match of the subscription's first topic, marked as a test."""
    topic = sub.spec.topics[0]
    stored = ctx.db.catalog.topic(topic)
    now = datetime.now(UTC)
    home = ctx.public_url()
    title = f"Test alert for {topic}"
    item = Item(
        item_id=f"test-{uuid.uuid4().hex[:20]}",
        url=f"{home}/app/subscriptions",
        title=title,
        summary="This is a test alert from newswatch: real alerts for this topic will look like this.",
        published=now,
        fetched_at=now,
        source=Source(feed_url=home, feed_title="newswatch (test)", host="newswatch"),
    )
    reason = MatchReason(terms={"test": ["test"]}, snippet=title, highlights=[(0, 4)], score=1.0)
    return Match(topic_id=topic, query=stored[0] if stored else "", item=item, reason=reason, matched_at=now)


def send_test(ctx: ApiContext, sub: Subscription) -> None:
    """Sends a test alert now and notes it in the delivery log; 502 with the reason when the
    destination refused it or did not answer."""
    if ctx.send_test is None:
        raise HTTPException(503, "sending is not running")
    kind = channel_kind(sub.spec.to)
    try:
        ctx.send_test(sub, test_match(ctx, sub))
    except DeliveryError as exc:
        ctx.db.outbox.note(sub.id, kind, "test_failed", f"test alert not delivered: {exc}")
        ctx.count("test_failed")
        raise HTTPException(502, f"the test alert was not delivered: {exc}") from exc
    ctx.db.outbox.note(sub.id, kind, "test_sent", "test alert delivered")
    ctx.count("test_sent")


def feed_urls(ctx: ApiContext, sub: Subscription) -> dict[str, str]:
    token = ctx.db.capabilities.get("feed", sub.id)
    base = f"{ctx.public_url()}/feeds/{token}"
    return {"atom": f"{base}.atom", "json": f"{base}.json"}


@router.get("/subscriptions")
def list_subscriptions(who: Caller, ctx: Context) -> list[dict[str, Any]]:
    """The caller's subscriptions (without secrets), each with its ``status``."""
    return [view(s) for s in ctx.db.catalog.subscriptions(owner=who.owner)]


@router.get("/subscriptions/{subscription_id}")
def get_subscription(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, Any]:
    """One of the caller's subscriptions; another owner's is a 404."""
    return view(owned(ctx, subscription_id, who.owner))


def _answer(saved: Saved, with_secret: bool) -> dict[str, Any]:
    body = view(saved.subscription, with_secret=with_secret)
    if saved.confirmation is not None:
        body["confirmation"] = saved.confirmation
    return body


@router.post("/subscriptions", status_code=201)
def create_subscription(body: SubscriptionConfig, who: Caller, ctx: Context) -> dict[str, Any]:
    """Creates a subscription; the response carries its webhook secret, shown once. An email
    subscription is ``pending`` until its address confirms it (``confirmation`` says whether
    the link was mailed)."""
    if ctx.db.catalog.subscription(body.id) is not None and ctx.db.catalog.holder(body.id) == who.owner:
        raise HTTPException(409, f"subscription {body.id!r} exists; PUT /subscriptions/{body.id} changes it")
    check_topics(ctx, body.topics, set(), ["body", "topics"])
    ctx.check_destination(body.to, ["body", "to"])
    return _answer(save(ctx, body, who.owner), with_secret=True)


@router.put("/subscriptions/{subscription_id}")
def put_subscription(
    subscription_id: SubscriptionId, body: SubscriptionConfig, who: Caller, ctx: Context
) -> dict[str, Any]:
    """Creates or replaces a subscription (the path's id); a new or changed email address is ``pending`` until it confirms."""
    if body.id != subscription_id:
        raise unprocessable(["body", "id"], f"id {body.id!r} differs from the path's {subscription_id!r}")
    existing = ctx.db.catalog.subscription(subscription_id)
    if existing is not None and existing.owner != who.owner:
        raise HTTPException(404, f"no subscription {subscription_id!r}")
    check_topics(ctx, body.topics, set(), ["body", "topics"])
    ctx.check_destination(body.to, ["body", "to"])
    return _answer(save(ctx, body, who.owner), with_secret=existing is None)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> None:
    """Deletes it, and the matches waiting for its digest; its id stays the owner's."""
    owned(ctx, subscription_id, who.owner)
    ctx.db.catalog.delete_subscription(subscription_id)
    ctx.db.capabilities.revoke("feed", subscription_id)
    ctx.routes.invalidate()


@router.post("/subscriptions/{subscription_id}/pause")
def pause(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, Any]:
    """No new alerts until resumed (alerts already queued still go)."""
    return _answer(set_paused(ctx, owned(ctx, subscription_id, who.owner), True), with_secret=False)


@router.post("/subscriptions/{subscription_id}/resume")
def resume(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, Any]:
    """Alerts again; an email address that left or never confirmed is asked again (pending)."""
    return _answer(set_paused(ctx, owned(ctx, subscription_id, who.owner), False), with_secret=False)


@router.post("/subscriptions/{subscription_id}/test")
def test(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, Any]:
    """Sends a made-up alert now, to see the channel work; 502 with the reason if it did not."""
    send_test(ctx, owned(ctx, subscription_id, who.owner))
    return {"delivered": True}


@router.get("/subscriptions/{subscription_id}/feeds")
def feeds(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, str]:
    """The subscription's alert feeds (Atom and JSON Feed): URLs with their own token, for a
    feed reader; never the account's token."""
    return feed_urls(ctx, owned(ctx, subscription_id, who.owner))


@router.post("/subscriptions/{subscription_id}/feeds/rotate")
def rotate_feeds(subscription_id: SubscriptionId, who: Caller, ctx: Context) -> dict[str, str]:
    """New feed URLs; the old ones answer 404 from now on."""
    sub = owned(ctx, subscription_id, who.owner)
    ctx.db.capabilities.rotate("feed", sub.id)
    return feed_urls(ctx, sub)
