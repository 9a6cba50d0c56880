"""``/deliveries`` (the owner's delivery log) and ``/alerts/stream`` (their alerts, live)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from newswatch.notifier.api.context import ApiContext, Caller, Context, unprocessable
from newswatch.notifier.api.subscriptions import owned
from newswatch.notifier.model import Delivery, alert_id_for, payload_matches
from newswatch.notifier.render import web_url
from newswatch.notifier.stream import StreamFull
from newswatch.shared.config import ID_PATTERN
from newswatch.shared.contract import Alert, Match

router = APIRouter(tags=["deliveries"])
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE = 15.0


def _alert(match: Match, alert_id: str) -> dict[str, Any]:
    item = match.item
    return {
        "alert_id": alert_id,
        "topic": match.topic_id,
        "title": item.title,
        "url": web_url(item.url),
        "source": item.source.feed_title or item.source.host,
        "published": (item.published or item.fetched_at).isoformat(),
        "why": match.reason.model_dump(mode="json"),
    }


def log_entries(ctx: ApiContext, rows: list[Delivery]) -> list[dict[str, Any]]:
    """Delivery-log rows with what they carried (the alerts: title, link, why it matched) and
    the near-duplicates recorded for their story ("also reported by")."""
    pairs = [(row.subscription_id, row.item_id) for row in rows if row.item_id]
    reports = ctx.db.outbox.also_reported_many(pairs)
    out = []
    for row in rows:
        matches = payload_matches(row.payload)
        ids = (
            [row.alert_id]
            if row.kind == "alert"
            else [alert_id_for(row.subscription_id, m.item.item_id, m.item.revision) for m in matches]
        )
        out.append(
            {
                **row.as_dict(),
                "alerts": [_alert(m, alert_id) for m, alert_id in zip(matches, ids, strict=False)],
                "also_reported_by": [
                    {"title": r.title, "url": r.url, "source": r.source}
                    for r in reports.get((row.subscription_id, row.item_id or ""), [])
                ],
            }
        )
    return out


@router.get("/deliveries")
def deliveries(
    who: Caller,
    ctx: Context,
    subscription: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    topic: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    status: Literal["pending", "delivered", "dead", "unsubscribed", "confirmed", "test_sent", "test_failed"]
    | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 time with a zone")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 time with a zone")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The owner's delivery log, newest first: status, attempts, failure, and the story's
    near-duplicates ("also reported by")."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise unprocessable(["query", name], "expected a time with a zone, e.g. 2026-11-25T08:00:00Z")
    if subscription is not None:
        owned(ctx, subscription, who.owner)
    rows = ctx.db.outbox.deliveries(
        owner=who.owner,
        subscription_id=subscription,
        topic_id=topic,
        status=status,
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
        limit=limit,
    )
    return log_entries(ctx, rows)


@router.get("/alerts/stream")
async def stream(
    who: Caller,
    ctx: Context,
    request: Request,
    topic: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    subscription: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Server-Sent Events: each alert delivered from now on to the owner's subscriptions
    (``Last-Event-ID`` resumes after that alert, if it is among the last thousand)."""
    hub = ctx.hub
    if hub is None:
        raise HTTPException(503, "the alert stream is not running")
    mine = {s.id for s in await asyncio.to_thread(ctx.db.catalog.subscriptions, who.owner)}
    if subscription is not None and subscription not in mine:
        raise HTTPException(404, f"no subscription {subscription!r}")
    try:
        queue = hub.subscribe(who.owner)
    except StreamFull as exc:
        raise HTTPException(429 if exc.per_owner else 503, str(exc)) from exc

    def wanted(alert: Alert) -> bool:
        return (
            alert.subscription_id in mine
            and (topic is None or alert.topic_id == topic)
            and (subscription is None or alert.subscription_id == subscription)
        )

    def event(alert: Alert) -> str:
        return f"event: alert\nid: {alert.alert_id}\ndata: {alert.model_dump_json()}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            for alert in hub.since(last_event_id) if last_event_id else []:
                if wanted(alert):
                    yield event(alert)
            while not await request.is_disconnected():
                try:
                    alert = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if wanted(alert):
                    yield event(alert)
        finally:
            hub.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
