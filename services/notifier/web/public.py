"""What a person reaches without signing in, by a link they were given: a subscription's
alert feeds, the unsubscribe link of its emails, the confirmation link of a new email
subscription. Each link is its own capability (``access``): it does one thing for one
subscription and reveals nothing else.

The unsubscribe URL answers RFC 8058 one-click: a POST (what a mail client sends for
``List-Unsubscribe-Post``) unsubscribes at once; a GET shows a button, so a scanner that
follows links unsubscribes nobody. The same holds for confirmation links.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newswatch.notifier.api.context import ApiContext, Context
from newswatch.notifier.api.subscriptions import address
from newswatch.notifier.model import Subscription, alert_id_for, channel_kind, payload_matches
from newswatch.notifier.render import web_url
from newswatch.notifier.web.feeds import Feed, FeedEntry, atom, json_feed
from newswatch.notifier.web.render import page
from newswatch.notifier.web.session import MaybeVisitor

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_TOKEN_MAX = 100


def _held_by(ctx: ApiContext, kind: str, token: str) -> Subscription | None:
    """The subscription a capability token (a feed's, an unsubscribe link's) stands for."""
    subscription_id = ctx.db.capabilities.subscription(kind, token) if len(token) < _TOKEN_MAX else None
    return ctx.db.catalog.subscription(subscription_id) if subscription_id else None


@router.get("/")
def home(visitor: MaybeVisitor) -> Response:
    """Sends a visitor to the topics page, or to sign in."""
    return RedirectResponse("/app/topics" if visitor else "/app/signin", status_code=303)


# --- alert feeds ----------------------------------------------------------------------------


def _feed(ctx: ApiContext, token: str) -> Feed | None:
    sub = _held_by(ctx, "feed", token)
    if sub is None:
        return None
    rows = ctx.db.outbox.deliveries(subscription_id=sub.id, limit=ctx.config.notifier.feed_items)
    entries: list[FeedEntry] = []
    for row in rows:
        if row.kind not in ("alert", "digest"):
            continue
        for match in payload_matches(row.payload):
            item = match.item
            alert_id = (
                row.alert_id if row.kind == "alert" else alert_id_for(sub.id, item.item_id, item.revision)
            )
            entries.append(
                FeedEntry(
                    alert_id=alert_id,
                    topic=match.topic_id,
                    title=item.title,
                    url=web_url(item.url),
                    source=item.source.feed_title or item.source.host,
                    snippet=match.reason.snippet,
                    terms=sorted(match.reason.terms),
                    at=datetime.fromtimestamp(row.created_at, UTC),
                )
            )
    base = f"{ctx.public_url()}/feeds/{token}"
    return Feed(
        title=f"newswatch alerts: {', '.join(sub.spec.topics)}",
        home_url=f"{ctx.public_url()}/app/alerts",
        atom_url=f"{base}.atom",
        json_url=f"{base}.json",
        entries=entries[: ctx.config.notifier.feed_items],
    )


def _feed_answer(request: Request, ctx: ApiContext, token: str, kind: str) -> Response:
    feed = _feed(ctx, token)
    if feed is None:  # unknown, rotated or deleted: the same answer
        ctx.count("feed_unknown")
        return Response("no such feed\n", status_code=404, media_type="text/plain")
    headers = {"ETag": feed.etag, "Last-Modified": feed.last_modified, "Cache-Control": "private, max-age=60"}
    if request.headers.get("if-none-match") == feed.etag:
        ctx.count("feed_not_modified")
        return Response(status_code=304, headers=headers)
    ctx.count("feed_served")
    if kind == "atom":
        return Response(atom(feed), media_type="application/atom+xml; charset=utf-8", headers=headers)
    return Response(json_feed(feed), media_type="application/feed+json; charset=utf-8", headers=headers)


@router.get("/feeds/{token}.atom")
def atom_feed(request: Request, ctx: Context, token: str) -> Response:
    """A subscription's alerts as Atom (the token is the feed's own, revocable)."""
    return _feed_answer(request, ctx, token, "atom")


@router.get("/feeds/{token}.json")
def json_feed_route(request: Request, ctx: Context, token: str) -> Response:
    """A subscription's alerts as JSON Feed 1.1 (the same entries and ids as the Atom feed)."""
    return _feed_answer(request, ctx, token, "json")


# --- leaving and confirming -----------------------------------------------------------------


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, ctx: Context, token: str) -> Response:
    """The unsubscribe link of an alert email: a page with a button (a link scanner unsubscribes nobody)."""
    sub = _held_by(ctx, "unsubscribe", token)
    if sub is None:
        return page(request, "notice.html.j2", None, status_code=404, title="Unknown link", text=_GONE)
    if sub.status == "unsubscribed":
        return page(
            request, "notice.html.j2", None, title="Unsubscribed", text=_LEFT.format(topics=_topics(sub))
        )
    return page(request, "unsubscribe.html.j2", None, token=token, topics=_topics(sub), address=address(sub))


_GONE = "This link is not known (the subscription may have been deleted). Nothing more will be sent by it."
_LEFT = "You are unsubscribed from alerts about {topics}. No more alerts will be sent to this address."


def _topics(sub: object) -> str:
    return ", ".join(getattr(getattr(sub, "spec", None), "topics", ()))


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, ctx: Context, token: str) -> Response:
    """One click (RFC 8058): no sign-in, no CSRF secret; the token is the permission."""
    sub = _held_by(ctx, "unsubscribe", token)
    if sub is None:
        return page(request, "notice.html.j2", None, status_code=404, title="Unknown link", text=_GONE)
    if sub.status != "unsubscribed":
        ctx.db.catalog.set_status(sub.id, "unsubscribed")
        ctx.db.outbox.note(
            sub.id, channel_kind(sub.spec.to), "unsubscribed", "the recipient unsubscribed (link)"
        )
        ctx.routes.invalidate()
        ctx.count("unsubscribed")
        log.info("unsubscribed by the recipient", extra={"subscription": sub.id})
    return page(request, "notice.html.j2", None, title="Unsubscribed", text=_LEFT.format(topics=_topics(sub)))


@router.get("/confirm/{secret}", response_class=HTMLResponse)
def confirm_page(request: Request, ctx: Context, secret: str) -> Response:
    """The link that confirms an email subscription: a page with a button."""
    subscription_id = ctx.db.links.peek("confirm", secret) if len(secret) < _TOKEN_MAX else None
    sub = ctx.db.catalog.subscription(subscription_id) if subscription_id else None
    if sub is None:
        return page(request, "notice.html.j2", None, status_code=410, title="Link expired", text=_STALE)
    return page(request, "confirm.html.j2", None, secret=secret, topics=_topics(sub), address=address(sub))


_STALE = (
    "This confirmation link was used already or has expired. "
    "Subscribe again to get a new one; nothing is sent until an address confirms."
)


@router.post("/confirm/{secret}", response_class=HTMLResponse)
def confirm(request: Request, ctx: Context, secret: str) -> Response:
    """Confirms the subscription (double opt-in): alerts start; the link works once."""
    subscription_id = ctx.db.links.redeem("confirm", secret) if len(secret) < _TOKEN_MAX else None
    sub = ctx.db.catalog.subscription(subscription_id) if subscription_id else None
    if sub is None:
        ctx.count("link_expired")
        return page(request, "notice.html.j2", None, status_code=410, title="Link expired", text=_STALE)
    ctx.db.catalog.set_status(sub.id, "active")
    ctx.db.outbox.note(
        sub.id, channel_kind(sub.spec.to), "confirmed", "the address confirmed the subscription"
    )
    ctx.routes.invalidate()
    ctx.count("confirmed")
    log.info("subscription confirmed by its address", extra={"subscription": sub.id})
    return page(
        request,
        "notice.html.j2",
        None,
        title="Confirmed",
        text=f"Alerts about {_topics(sub)} will come to {address(sub)}. Every email has a link to stop them.",
    )
