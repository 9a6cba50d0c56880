"""The web app's pages under ``/app``: sign in and out, topics (with the live preview),
subscriptions, alerts. Server-rendered; every form works without JavaScript (htmx only
makes the preview live). Each page calls the same helpers as the API routes it mirrors
(``api.topics``, ``api.subscriptions``, ``api.deliveries``), so both enforce the same rules.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, time
from email.message import EmailMessage
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newswatch.matcher.parser import MAX_QUERY_CHARS
from newswatch.notifier.api import subscriptions as subs_api
from newswatch.notifier.api import topics as topics_api
from newswatch.notifier.api.context import ApiContext, Context
from newswatch.notifier.api.deliveries import log_entries
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.model import Subscription, channel_kind
from newswatch.notifier.web.forms import CHANNELS, DAYS, RHYTHMS, SubscriptionForm, new_subscription_id
from newswatch.notifier.web.render import page
from newswatch.notifier.web.session import (
    SESSION_COOKIE,
    Checked,
    MaybeVisitor,
    SignedIn,
    Visitor,
)
from newswatch.shared.config import ID_PATTERN, check_email

log = logging.getLogger(__name__)
router = APIRouter(prefix="/app", include_in_schema=False)
PREVIEW_SINCE = 7 * 86400.0
PREVIEW_HITS = 10
#: The most sign-in links one address gets per window (a form anyone can post to).
SIGNIN_LINK_EVERY = 60.0


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _next(value: str | None) -> str:
    """Where to go after signing in: a path of this app only (never another site)."""
    return value if value and value.startswith("/app/") and not value.startswith("//") else "/app/topics"


def _start_session(ctx: ApiContext, token_id: str, goto: str) -> RedirectResponse:
    lifetime = ctx.config.notifier.session_lifetime
    cookie, _session = ctx.db.sessions.start(token_id, lifetime)
    response = _see(goto)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(lifetime),
        httponly=True,
        samesite="lax",
        secure=ctx.public_url().startswith("https://"),
        path="/",
    )
    return response


# --- signing in and out ---------------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_page(
    request: Request, visitor: MaybeVisitor, next: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """Sign in: with a token, or by a link mailed to the token's address."""
    if visitor is not None:
        return _see(_next(next))
    return page(request, "signin.html.j2", None, goto=_next(next))


@router.post("/signin")
def signin(
    request: Request,
    ctx: Context,
    token: Annotated[str, Form(max_length=200)] = "",
    goto: Annotated[str, Form(alias="next", max_length=200)] = "",
) -> Response:
    """Presents an API token once; the browser keeps a session instead of the token."""
    who = ctx.db.tokens.authenticate(token.strip()) if token.strip() else None
    if who is None:
        ctx.count("signin_refused")
        return page(
            request,
            "signin.html.j2",
            None,
            status_code=401,
            goto=_next(goto),
            error="That token is unknown, expired or revoked.",
        )
    log.info("web sign-in", extra={"owner": who.owner, "token_id": who.token_id, "by": "token"})
    ctx.count("signin_token")
    return _start_session(ctx, who.token_id, _next(goto))


@router.post("/signin/email", response_class=HTMLResponse)
def signin_by_email(
    request: Request, ctx: Context, email: Annotated[str, Form(max_length=254)] = ""
) -> Response:
    """Mails a sign-in link if the address is a token holder's. The answer is the same
    either way, so the form does not tell who has an account."""
    sent_to = email.strip()
    try:
        address = check_email(sent_to)
    except ValueError as exc:
        return page(request, "signin.html.j2", None, status_code=422, goto="/app/topics", error=str(exc))
    who = ctx.db.tokens.by_email(address)
    if (
        who is not None
        and ctx.mailer is not None
        and not ctx.db.links.recent("signin", who.token_id, SIGNIN_LINK_EVERY)
    ):
        secret = ctx.db.links.issue("signin", who.token_id, ctx.config.notifier.signin_link_lifetime)
        message = EmailMessage()
        message["Subject"] = "Your newswatch sign-in link"
        message["To"] = address
        minutes = ctx.config.notifier.signin_link_lifetime / 60
        message.set_content(
            f"To sign in to newswatch, open this link and press Sign in:\n\n"
            f"  {ctx.public_url()}/app/signin/{secret}\n\n"
            f"It works once, for {minutes:g} minutes. If you did not ask for it, ignore this email.\n"
        )
        try:
            ctx.mailer.send(message, address)
            ctx.count("signin_link_mailed")
        except DeliveryError as exc:
            log.warning("sign-in link not sent", extra={"error": str(exc)})
    return page(request, "signin.html.j2", None, goto="/app/topics", mailed=sent_to)


@router.get("/signin/{secret}", response_class=HTMLResponse)
def signin_link_page(request: Request, ctx: Context, secret: str) -> Response:
    """The page behind a mailed link: a button, so a mail scanner that follows links does not
    spend it."""
    token_id = ctx.db.links.peek("signin", secret) if len(secret) < 100 else None
    who = ctx.db.tokens.by_id(token_id) if token_id else None
    if who is None:
        return page(request, "signin.html.j2", None, status_code=410, goto="/app/topics", error=_EXPIRED)
    return page(request, "signin_link.html.j2", None, owner=who.owner, secret=secret)


_EXPIRED = "That sign-in link was used already or has expired. Ask for a new one."


@router.post("/signin/{secret}")
def signin_by_link(request: Request, ctx: Context, secret: str) -> Response:
    """Spends a mailed sign-in link (once, before it expires) and starts a session."""
    token_id = ctx.db.links.redeem("signin", secret) if len(secret) < 100 else None
    who = ctx.db.tokens.by_id(token_id) if token_id else None
    if who is None:
        ctx.count("link_expired")
        return page(request, "signin.html.j2", None, status_code=410, goto="/app/topics", error=_EXPIRED)
    log.info("web sign-in", extra={"owner": who.owner, "token_id": who.token_id, "by": "link"})
    ctx.count("signin_link")
    return _start_session(ctx, who.token_id, "/app/topics")


@router.post("/signout")
def signout(visitor: Checked, ctx: Context) -> Response:
    """Ends the session on the server and drops the cookie."""
    ctx.db.sessions.end(visitor.cookie)
    ctx.count("signout")
    response = _see("/app/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- topics ---------------------------------------------------------------------------------


@router.get("/topics", response_class=HTMLResponse)
def topics_page(request: Request, visitor: SignedIn, ctx: Context) -> Response:
    """Topics with their query, matches in the last 24 h and last match."""
    topics = topics_api.topics_with_activity(ctx)
    mine = {t for s in ctx.db.catalog.subscriptions(visitor.who.owner) for t in s.spec.topics}
    return page(request, "topics.html.j2", visitor, topics=topics, subscribed=mine)


@router.get("/topics/new", response_class=HTMLResponse)
def new_topic_page(request: Request, visitor: SignedIn) -> Response:
    """A new topic (admins) or a query to try (subscribers), with the live preview."""
    return page(request, "topic_form.html.j2", visitor, topic_id="", query="", editing=False, preview=None)


@router.get("/topics/{topic_id}/edit", response_class=HTMLResponse)
def edit_topic_page(request: Request, visitor: SignedIn, ctx: Context, topic_id: str) -> Response:
    """A topic's query with its preview over recent items."""
    found = ctx.db.catalog.topic(topic_id)
    if found is None:
        raise HTTPException(404, f"no topic {topic_id!r}")
    result = topics_api.run_preview(ctx, found[0], _since(ctx), PREVIEW_HITS)
    return page(
        request,
        "topic_form.html.j2",
        visitor,
        topic_id=topic_id,
        query=found[0],
        editing=True,
        preview=result,
    )


def _since(ctx: ApiContext) -> float:
    return min(PREVIEW_SINCE, ctx.config.notifier.max_lookback)


@router.post("/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    visitor: Checked,
    ctx: Context,
    query: Annotated[str, Form(max_length=MAX_QUERY_CHARS)] = "",
) -> Response:
    """The live preview (an htmx fragment): the error with a caret, or the hits."""
    if not query.strip():
        return page(request, "_preview.html.j2", visitor, preview=None)
    result = await asyncio.to_thread(topics_api.run_preview, ctx, query, _since(ctx), PREVIEW_HITS)
    return page(request, "_preview.html.j2", visitor, preview=result)


@router.post("/topics", response_class=HTMLResponse)
async def save_topic(
    request: Request,
    visitor: Checked,
    ctx: Context,
    topic_id: Annotated[str, Form(alias="id", max_length=64)] = "",
    query: Annotated[str, Form(max_length=MAX_QUERY_CHARS)] = "",
    action: Annotated[str, Form()] = "preview",
    editing: Annotated[str, Form()] = "",
) -> Response:
    """Save (admins), or show the preview in the page (the form without JavaScript)."""
    values: dict[str, Any] = {"topic_id": topic_id, "query": query, "editing": editing == "yes"}
    result = await asyncio.to_thread(topics_api.run_preview, ctx, query, _since(ctx), PREVIEW_HITS)
    if action != "save":
        return page(request, "topic_form.html.j2", visitor, preview=result, **values)
    error = None
    if not visitor.admin:
        error = "Only an admin may save topics; you can test queries and subscribe to topics."
    elif not re.match(ID_PATTERN, topic_id):
        error = (
            "The name must be lowercase letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    elif result.error is not None:
        error = "Fix the query first."
    if error is None:
        try:
            await asyncio.to_thread(topics_api.save_topic, ctx, topic_id, query, visitor.who.owner)
        except HTTPException as exc:
            error = str(exc.detail)
    if error is not None:
        return page(
            request, "topic_form.html.j2", visitor, status_code=422, preview=result, error=error, **values
        )
    return _see(f"/app/topics?saved={quote(topic_id)}")


# --- subscriptions --------------------------------------------------------------------------


def _form_page(
    request: Request,
    visitor: Visitor,
    ctx: ApiContext,
    form: SubscriptionForm,
    editing: bool,
    status: int = 200,
) -> Response:
    return page(
        request,
        "subscription_form.html.j2",
        visitor,
        status_code=status,
        form=form,
        editing=editing,
        all_topics=[t[0] for t in ctx.db.catalog.topics()],
        rhythms=RHYTHMS,
        days=DAYS,
        channels=CHANNELS,
    )


@router.get("/subscriptions", response_class=HTMLResponse)
def subscriptions_page(
    request: Request,
    visitor: SignedIn,
    ctx: Context,
    note: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """The owner's subscriptions: status, channel, rhythm, feeds and actions."""
    mine = ctx.db.catalog.subscriptions(visitor.who.owner)
    feeds = {s.id: subs_api.feed_urls(ctx, s) for s in mine}
    return page(
        request,
        "subscriptions.html.j2",
        visitor,
        subscriptions=mine,
        feeds=feeds,
        kinds={s.id: channel_kind(s.spec.to) for s in mine},
        note=note,
    )


@router.get("/subscriptions/new", response_class=HTMLResponse)
def new_subscription_page(
    request: Request,
    visitor: SignedIn,
    ctx: Context,
    topic: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The subscription form (``?topic=`` preselects topics)."""
    return _form_page(request, visitor, ctx, SubscriptionForm(topics=list(topic or [])), editing=False)


@router.get("/subscriptions/{subscription_id}/edit", response_class=HTMLResponse)
def edit_subscription_page(
    request: Request, visitor: SignedIn, ctx: Context, subscription_id: str
) -> Response:
    """The subscription form, filled in."""
    sub = subs_api.owned(ctx, subscription_id, visitor.who.owner)
    return _form_page(request, visitor, ctx, SubscriptionForm.from_spec(sub.spec), editing=True)


@router.post("/subscriptions", response_class=HTMLResponse)
async def save_subscription(request: Request, visitor: Checked, ctx: Context) -> Response:
    """Saves the form; every wrong field is named at once (422)."""
    data = await request.form()
    values = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    topics = [str(t) for t in data.getlist("topics")]
    form = SubscriptionForm.from_form(values, topics)
    editing = values.get("editing") == "yes"
    spec = form.spec(new_subscription_id(topics))
    if spec is None:
        return _form_page(request, visitor, ctx, form, editing, status=422)
    try:
        saved = await asyncio.to_thread(_save_subscription, ctx, visitor, spec, editing)
    except HTTPException as exc:
        detail = exc.detail
        if isinstance(detail, list):  # a 422 naming the field
            for error in detail:
                field = str(error.get("loc", ["", "form"])[-1])
                form.errors[{"to": "address"}.get(field, field)] = str(error.get("msg", ""))
        else:
            form.errors["form"] = str(detail)
        return _form_page(request, visitor, ctx, form, editing, status=exc.status_code)
    note = f"Saved {saved.subscription.id}."
    if saved.confirmation == "sent":
        note += f" We sent a confirmation link to {subs_api.address(saved.subscription)}: alerts start once it is confirmed."
    elif saved.confirmation:
        note += f" The confirmation email was {saved.confirmation}."
    return _see(f"/app/subscriptions?note={quote(note)}")


def _save_subscription(ctx: ApiContext, visitor: Visitor, spec: Any, editing: bool) -> subs_api.Saved:
    existing = ctx.db.catalog.subscription(spec.id)
    if existing is not None and existing.owner != visitor.who.owner:
        raise HTTPException(404, f"no subscription {spec.id!r}")
    if existing is not None and not editing:
        raise HTTPException(409, f"you have a subscription named {spec.id!r} already; choose another name")
    subs_api.check_topics(ctx, spec.topics, set(), ["body", "topics"])
    ctx.check_destination(spec.to, ["body", "to"])
    return subs_api.save(ctx, spec, visitor.who.owner)


@router.post("/subscriptions/{subscription_id}/{action}", response_class=HTMLResponse)
async def subscription_action(visitor: Checked, ctx: Context, subscription_id: str, action: str) -> Response:
    """``pause``, ``resume``, ``test``, ``delete`` or ``rotate-feeds`` a subscription."""
    sub = subs_api.owned(ctx, subscription_id, visitor.who.owner)
    note = await asyncio.to_thread(_act, ctx, sub, action)
    return _see(f"/app/subscriptions?note={quote(note)}")


def _act(ctx: ApiContext, sub: Subscription, action: str) -> str:
    if action == "pause":
        subs_api.set_paused(ctx, sub, True)
        return f"Paused {sub.id}: no new alerts until you resume it."
    if action == "resume":
        saved = subs_api.set_paused(ctx, sub, False)
        if saved.subscription.status == "pending":
            return f"{sub.id} waits for its address to confirm it (confirmation email {saved.confirmation})."
        return f"Resumed {sub.id}."
    if action == "test":
        try:
            subs_api.send_test(ctx, sub)
        except HTTPException as exc:
            return f"The test alert for {sub.id} was not delivered: {exc.detail}"
        return f"A test alert went to {sub.id}."
    if action == "delete":
        ctx.db.catalog.delete_subscription(sub.id)
        ctx.db.capabilities.revoke("feed", sub.id)
        ctx.routes.invalidate()
        return f"Deleted {sub.id}."
    if action == "rotate-feeds":
        ctx.db.capabilities.rotate("feed", sub.id)
        return f"New feed addresses for {sub.id}; the old ones no longer work."
    raise HTTPException(404, f"no action {action!r}")


# --- alerts ---------------------------------------------------------------------------------


def _day(value: str | None, end: bool) -> float | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise HTTPException(422, f"expected a date such as 2026-12-05, got {value[:20]!r}") from exc
    return datetime.combine(day, time.max if end else time.min, UTC).timestamp()


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    visitor: SignedIn,
    ctx: Context,
    topic: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    subscription: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The alert history (delivery log) with filters, and the live view of new alerts."""
    if subscription:
        subs_api.owned(ctx, subscription, visitor.who.owner)
    rows = ctx.db.outbox.deliveries(
        owner=visitor.who.owner,
        subscription_id=subscription or None,
        topic_id=topic or None,
        since=_day(since, end=False),
        until=_day(until, end=True),
        limit=200,
    )
    mine = ctx.db.catalog.subscriptions(visitor.who.owner)
    topics = sorted({t for s in mine for t in s.spec.topics})
    return page(
        request,
        "alerts.html.j2",
        visitor,
        entries=log_entries(ctx, rows),
        topics=topics,
        topic=topic or "",
        since=since or "",
        until=until or "",
    )
