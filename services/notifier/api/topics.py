"""``/topics``: the shared watch topics (admins change them, everyone sees and tests them)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from newswatch.matcher import replay
from newswatch.matcher.parser import MAX_QUERY_CHARS
from newswatch.notifier.api.context import Admin, ApiContext, Caller, Context
from newswatch.notifier.errors import IdTakenError
from newswatch.notifier.preview import Preview, preview
from newswatch.shared.config import ID_PATTERN
from newswatch.shared.contract import TOPICS, TopicDefinition, encode
from newswatch.shared.kafka_io import Record

router = APIRouter(tags=["topics"])
TopicId = Annotated[str, Path(pattern=ID_PATTERN)]


class TopicIn(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)


class TopicOut(BaseModel):
    id: str
    query: str
    owner: str
    matches_24h: int = Field(default=0, description="matches in the last 24 hours")
    last_match_at: datetime | None = Field(default=None, description="when it last matched")


class TestIn(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    since: str = Field(
        default="7d", description="how far back, e.g. 24h or 7d (at most notifier.max_lookback)"
    )
    limit: int = Field(default=20, ge=1, le=500)


def save_topic(ctx: ApiContext, topic_id: str, query: str, owner: str) -> None:
    """Store (the source of truth), then publish to ``newswatch.topics``; 403/409/403 when
    the id is another owner's, was another owner's, or the owner has too many topics."""
    existing = ctx.db.catalog.topic(topic_id)
    if existing is not None and existing[1] != owner:
        raise HTTPException(403, f"topic {topic_id!r} belongs to another owner")
    cap = ctx.config.notifier.max_topics_per_owner
    if existing is None and ctx.db.catalog.count_topics(owner) >= cap:
        raise HTTPException(
            403, f"{owner!r} has {cap} topics, the most allowed (notifier.max_topics_per_owner)"
        )
    try:
        ctx.db.catalog.put_topic(topic_id, query, owner)
    except IdTakenError as exc:
        raise HTTPException(409, str(exc)) from exc
    definition = TopicDefinition(id=topic_id, query=query, updated_at=datetime.now(UTC))
    ctx.publisher.publish([Record(TOPICS, topic_id, encode(definition))])


def topics_with_activity(ctx: ApiContext) -> list[TopicOut]:
    """Every topic with its matches of the last 24 hours and its last match."""
    activity = ctx.db.activity.summary()
    out = []
    for topic_id, query, owner in ctx.db.catalog.topics():
        seen = activity.get(topic_id)
        last = datetime.fromtimestamp(seen.last_match_at, UTC) if seen and seen.last_match_at else None
        out.append(
            TopicOut(
                id=topic_id,
                query=query,
                owner=owner,
                matches_24h=seen.matches_24h if seen else 0,
                last_match_at=last,
            )
        )
    return out


@router.get("/topics", response_model=list[TopicOut])
def list_topics(who: Caller, ctx: Context) -> list[TopicOut]:
    """Every topic (visible to all), with its matches in the last 24 h and its last match."""
    return topics_with_activity(ctx)


@router.get("/topics/{topic_id}", response_model=TopicOut)
def get_topic(topic_id: TopicId, who: Caller, ctx: Context) -> TopicOut:
    """One topic, with its matches in the last 24 h and its last match."""
    found = next((t for t in topics_with_activity(ctx) if t.id == topic_id), None)
    if found is None:
        raise HTTPException(404, f"no topic {topic_id!r}")
    return found


@router.put("/topics/{topic_id}", response_model=TopicOut)
def put_topic(
    topic_id: TopicId,
    body: TopicIn,
    who: Admin,
    ctx: Context,
    backfill: Annotated[
        str | None,
        Query(description="also deliver matches from this far back to the caller's subscriptions, e.g. 24h"),
    ] = None,
) -> JSONResponse:
    """Create or change a topic (admin). ``backfill`` also delivers its matches among the
    items of that period still on ``newswatch.items`` to the caller's own subscriptions."""
    ctx.check_query(body.query, ["body", "query"])
    since = ctx.lookback(backfill, ["query", "backfill"]) if backfill else None
    save_topic(ctx, topic_id, body.query, who.owner)
    result: dict[str, Any] = {"id": topic_id, "query": body.query, "owner": who.owner}
    if since is not None:
        bootstrap = ctx.config.require_bootstrap()
        recent = replay.recent_items(bootstrap, ctx.config.kafka, since)
        topic = ctx.compiler().compile(topic_id, body.query)
        result["backfilled"] = replay.backfill(
            bootstrap, ctx.config.kafka, ctx.compiler(), [topic], recent.items, for_owner=who.owner
        )
    return JSONResponse(result)


@router.delete("/topics/{topic_id}", status_code=204)
def delete_topic(topic_id: TopicId, who: Admin, ctx: Context) -> None:
    """Delete a topic (admin, its owner); 409 while subscriptions use it. Its id stays taken."""
    found = ctx.db.catalog.topic(topic_id)
    if found is None:
        raise HTTPException(404, f"no topic {topic_id!r}")
    if found[1] != who.owner:
        raise HTTPException(403, f"topic {topic_id!r} belongs to another owner")
    users = [s for s in ctx.db.catalog.subscriptions() if topic_id in s.spec.topics]
    if users:
        mine = [s.id for s in users if s.owner == who.owner]
        yours = f" (yours: {', '.join(mine)})" if mine else ""
        raise HTTPException(409, f"topic {topic_id!r} is used by {len(users)} subscription(s){yours}")
    ctx.db.catalog.delete_topic(topic_id)
    ctx.publisher.publish([Record(TOPICS, topic_id, None)])  # a tombstone: the matchers drop it


def run_preview(ctx: ApiContext, query: str, since: float, limit: int) -> Preview:
    """The preview of ``query`` over the items of the last ``since`` seconds (the API's test and
    the web app's live preview)."""
    return preview(ctx.compiler(), query, ctx.recent_items(since), limit)


@router.post("/topics/test")
async def test_topic(body: TestIn, who: Caller, ctx: Context) -> dict[str, Any]:
    """Evaluates a query against recent items without creating a topic; ``aliases`` lists the
    alias sets its words name (what else they match)."""
    ctx.check_query(body.query, ["body", "query"])
    since = ctx.lookback(body.since, ["body", "since"])
    result = await asyncio.to_thread(run_preview, ctx, body.query, since, body.limit)
    return {
        "items": result.items,
        "matches": result.matches,
        "aliases": [{"name": name, "also": also} for name, also in result.aliases],
        "hits": [
            {
                "title": hit.item.title,
                "url": hit.item.url,
                "source": hit.source,
                "published": (hit.item.published or hit.item.fetched_at).isoformat(),
                "why": hit.reason.model_dump(mode="json"),
                "highlighted": replay.highlighted(hit.reason),
            }
            for hit in result.hits
        ],
    }
