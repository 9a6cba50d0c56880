"""``POST /apply``: a YAML (or JSON) document of topics and subscriptions, upserted as the
caller (admin: topics are shared). What ``newswatch apply --server`` sends."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from newswatch.notifier.api.context import Admin, ApiContext, Context, unprocessable
from newswatch.notifier.api.subscriptions import check_topics, save
from newswatch.notifier.api.topics import save_topic
from newswatch.shared.config import SubscriptionConfig, TopicConfig
from newswatch.shared.yaml_input import YamlInputError, load

router = APIRouter(tags=["apply"])


class ApplyDocument(BaseModel):
    """What ``POST /apply`` accepts: topics and subscriptions to upsert."""

    model_config = {"extra": "forbid"}
    topics: list[TopicConfig] = []
    subscriptions: list[SubscriptionConfig] = []


def _parse(raw: bytes) -> Any:
    """YAML without aliases or deep nesting (see ``shared.yaml_input``), off the event loop."""
    try:
        return load(raw.decode("utf-8"), "body") if raw.strip() else {}
    except UnicodeDecodeError as exc:
        raise unprocessable(["body"], f"not valid YAML: not UTF-8: {exc}", "yaml") from exc
    except YamlInputError as exc:
        raise unprocessable(["body"], f"not valid YAML: {exc}", "yaml") from exc


def _apply(ctx: ApiContext, document: ApplyDocument, owner: str) -> dict[str, Any]:
    for index, topic in enumerate(document.topics):
        ctx.check_query(topic.query, ["body", "topics", index, "query"])
    defined = {t.id for t in document.topics}
    for index, sub in enumerate(document.subscriptions):
        check_topics(ctx, sub.topics, defined, ["body", "subscriptions", index, "topics"])
        ctx.check_destination(sub.to, ["body", "subscriptions", index, "to"])
        holder = ctx.db.catalog.holder(sub.id)
        if holder is not None and holder != owner:
            raise unprocessable(
                ["body", "subscriptions", index, "id"], f"subscription id {sub.id!r} is taken"
            )
    for topic in document.topics:
        save_topic(ctx, topic.id, topic.query, owner)
    secrets: dict[str, str] = {}
    confirmations: dict[str, str] = {}
    for sub in document.subscriptions:
        new = ctx.db.catalog.subscription(sub.id) is None
        saved = save(ctx, sub, owner)
        if new:
            secrets[sub.id] = saved.subscription.secret
        if saved.confirmation is not None:
            confirmations[sub.id] = saved.confirmation
    return {
        "topics": [t.id for t in document.topics],
        "subscriptions": [s.id for s in document.subscriptions],
        "secrets": secrets,
        "confirmations": confirmations,
    }


@router.post("/apply")
async def apply(request: Request, who: Admin, ctx: Context) -> dict[str, Any]:
    """Upserts the topics and subscriptions of a YAML (or JSON) document; new subscriptions'
    webhook secrets are in the answer, once."""
    data = await asyncio.to_thread(_parse, await request.body())
    if not isinstance(data, dict):
        raise unprocessable(["body"], "expected a mapping with topics: and/or subscriptions:")
    try:
        document = ApplyDocument.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    return await asyncio.to_thread(_apply, ctx, document, who.owner)
