"""The notifier's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

Every request needs ``Authorization: Bearer <token>`` (tokens from ``newswatch tokens
create``, stored hashed). A token belongs to an owner: the owner sees and changes only
their subscriptions (another owner's is a 404) and their topics (topics are visible to
all, since anyone may subscribe to them; changing another owner's topic is a 403). Bad
input is a 422 whose ``detail[].loc`` names the field. Database or broker outages are 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import uvicorn
import yaml
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError

from newswatch import __version__
from newswatch.matcher import replay
from newswatch.matcher.errors import QueryError
from newswatch.matcher.topics import Compiler
from newswatch.notifier.intake import Routes
from newswatch.notifier.model import Subscription
from newswatch.notifier.store import NotifierStore
from newswatch.notifier.stream import AlertHub
from newswatch.shared.config import ID_PATTERN, Config, SubscriptionConfig, TopicConfig
from newswatch.shared.contract import TOPICS, Alert, TopicDefinition, encode
from newswatch.shared.db import StoreError
from newswatch.shared.durations import parse_duration
from newswatch.shared.errors import NewswatchError
from newswatch.shared.kafka_io import Publisher, Record

log = logging.getLogger(__name__)
TopicId = Annotated[str, Path(pattern=ID_PATTERN)]


class TopicIn(BaseModel):
    query: str = Field(min_length=1, max_length=4096)


class TopicOut(BaseModel):
    id: str
    query: str
    owner: str


class TestIn(BaseModel):
    query: str = Field(min_length=1, max_length=4096)
    since: str = Field(default="7d", description="how far back, e.g. 24h or 7d")
    limit: int = Field(default=20, ge=1, le=500)


class ApplyDocument(BaseModel):
    """What ``POST /apply`` accepts (YAML or JSON): topics and subscriptions to upsert."""

    model_config = {"extra": "forbid"}
    topics: list[TopicConfig] = []
    subscriptions: list[SubscriptionConfig] = []


_bearer = HTTPBearer(auto_error=False)


def _owner(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The owner of the request's bearer token, or 401."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    store: NotifierStore = request.app.state.store
    found = store.owner_of(creds.credentials)
    if found is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return found


# Module level: FastAPI reads parameter annotations by name, so they must resolve here.
Owner = Annotated[str, Depends(_owner)]


def _unprocessable(loc: list[str | int], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": message, "type": kind}])


def _subscription_view(sub: Subscription, with_secret: bool = False) -> dict[str, Any]:
    body = sub.spec.model_dump(mode="json", exclude={"secret"})
    body["owner"] = sub.owner
    if with_secret:
        body["secret"] = sub.secret
    return body


def make_app(
    store: NotifierStore,
    publisher: Publisher,
    routes: Routes,
    config: Config,
    hub: AlertHub | None = None,
    compiler: Callable[[], Compiler] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="newswatch notifier API",
        version=__version__,
        description="Topics, subscriptions, the delivery log and a live alert stream.",
    )
    app.state.store = store
    compiler_lock = threading.Lock()
    compiled: list[Compiler] = []

    def get_compiler() -> Compiler:
        with compiler_lock:
            if not compiled:
                compiled.append(compiler() if compiler else Compiler.from_settings(config.matcher))
            return compiled[0]

    @app.exception_handler(StoreError)
    async def _store_down(_request: Request, exc: StoreError) -> JSONResponse:
        log.error("API request failed: database", extra={"error": str(exc)})
        return JSONResponse({"detail": f"state database unavailable: {exc}"}, status_code=503)

    @app.exception_handler(NewswatchError)
    async def _broker_down(_request: Request, exc: NewswatchError) -> JSONResponse:
        log.error("API request failed", extra={"error": str(exc)})
        return JSONResponse({"detail": str(exc)}, status_code=503)

    def check_query(query: str, loc: list[str | int]) -> None:
        try:
            get_compiler().compile("check", query)
        except QueryError as exc:
            raise _unprocessable(loc, str(exc), "query") from exc

    def save_topic(topic_id: str, query: str, who: str) -> None:
        existing = store.topic(topic_id)
        if existing is not None and existing[1] != who:
            raise HTTPException(403, f"topic {topic_id!r} belongs to another owner")
        store.put_topic(topic_id, query, who)
        publisher.publish(
            [
                Record(
                    TOPICS,
                    topic_id,
                    encode(TopicDefinition(id=topic_id, query=query, updated_at=datetime.now(UTC))),
                )
            ]
        )

    def check_topics(topics: tuple[str, ...] | list[str], extra: set[str], loc: list[str | int]) -> None:
        known = {t[0] for t in store.topics()} | extra
        missing = [t for t in topics if t not in known]
        if missing:
            raise _unprocessable(loc, f"unknown topic(s) {missing}")

    # --- topics ------------------------------------------------------------------------

    @app.get("/topics", response_model=list[TopicOut])
    def list_topics(who: Owner) -> list[TopicOut]:
        return [TopicOut(id=i, query=q, owner=o) for i, q, o in store.topics()]

    @app.get("/topics/{topic_id}", response_model=TopicOut)
    def get_topic(topic_id: TopicId, who: Owner) -> TopicOut:
        found = store.topic(topic_id)
        if found is None:
            raise HTTPException(404, f"no topic {topic_id!r}")
        return TopicOut(id=topic_id, query=found[0], owner=found[1])

    @app.put("/topics/{topic_id}", response_model=TopicOut)
    def put_topic(
        topic_id: TopicId,
        body: TopicIn,
        who: Owner,
        backfill: Annotated[
            str | None, Query(description="also deliver matches from this far back, e.g. 24h")
        ] = None,
    ) -> JSONResponse:
        check_query(body.query, ["body", "query"])
        since = _duration(backfill, ["query", "backfill"]) if backfill else None
        save_topic(topic_id, body.query, who)
        result: dict[str, Any] = {"id": topic_id, "query": body.query, "owner": who}
        if since is not None:
            bootstrap = config.require_bootstrap()
            recent = replay.recent_items(bootstrap, config.kafka, since)
            topic = get_compiler().compile(topic_id, body.query)
            result["backfilled"] = replay.backfill(
                bootstrap, config.kafka, get_compiler(), [topic], recent.items
            )
        return JSONResponse(result)

    @app.delete("/topics/{topic_id}", status_code=204)
    def delete_topic(topic_id: TopicId, who: Owner) -> None:
        found = store.topic(topic_id)
        if found is None:
            raise HTTPException(404, f"no topic {topic_id!r}")
        if found[1] != who:
            raise HTTPException(403, f"topic {topic_id!r} belongs to another owner")
        users = [s.id for s in store.subscriptions() if topic_id in s.spec.topics]
        if users:
            raise HTTPException(409, f"topic {topic_id!r} is used by subscription(s) {users}")
        store.delete_topic(topic_id)
        publisher.publish([Record(TOPICS, topic_id, None)])  # a tombstone: the matchers drop it

    @app.post("/topics/test")
    def test_topic(body: TestIn, who: Owner) -> dict[str, Any]:
        """Evaluates a query against recent items without creating a topic."""
        check_query(body.query, ["body", "query"])
        since = _duration(body.since, ["body", "since"])
        topic = get_compiler().compile("test", body.query)
        recent = replay.recent_items(config.require_bootstrap(), config.kafka, since)
        hits = replay.evaluate(get_compiler(), topic, recent.items)
        return {
            "items": len(recent.items),
            "matches": len(hits),
            "hits": [
                {
                    "title": item.title,
                    "url": item.url,
                    "source": item.source.feed_title or item.source.host,
                    "published": (item.published or item.fetched_at).isoformat(),
                    "why": reason.model_dump(mode="json"),
                    "highlighted": replay.highlighted(reason),
                }
                for item, reason in hits[: body.limit]
            ],
        }

    # --- subscriptions -----------------------------------------------------------------

    @app.get("/subscriptions")
    def list_subscriptions(who: Owner) -> list[dict[str, Any]]:
        return [_subscription_view(s) for s in store.subscriptions(owner=who)]

    def owned(subscription_id: str, who: str) -> Subscription:
        sub = store.subscription(subscription_id)
        if sub is None or sub.owner != who:  # another owner's looks like none at all
            raise HTTPException(404, f"no subscription {subscription_id!r}")
        return sub

    @app.get("/subscriptions/{subscription_id}")
    def get_subscription(subscription_id: TopicId, who: Owner) -> dict[str, Any]:
        return _subscription_view(owned(subscription_id, who))

    @app.post("/subscriptions", status_code=201)
    def create_subscription(body: SubscriptionConfig, who: Owner) -> dict[str, Any]:
        """Creates a subscription; the response carries its webhook secret, shown once."""
        if store.subscription(body.id) is not None:
            raise HTTPException(
                409, f"subscription {body.id!r} exists; PUT /subscriptions/{body.id} changes it"
            )
        check_topics(body.topics, set(), ["body", "topics"])
        sub = store.put_subscription(body, who)
        routes.invalidate()
        return _subscription_view(sub, with_secret=True)

    @app.put("/subscriptions/{subscription_id}")
    def put_subscription(subscription_id: TopicId, body: SubscriptionConfig, who: Owner) -> dict[str, Any]:
        if body.id != subscription_id:
            raise _unprocessable(
                ["body", "id"], f"id {body.id!r} differs from the path's {subscription_id!r}"
            )
        existing = store.subscription(subscription_id)
        if existing is not None and existing.owner != who:
            raise HTTPException(404, f"no subscription {subscription_id!r}")
        check_topics(body.topics, set(), ["body", "topics"])
        sub = store.put_subscription(body, who)
        routes.invalidate()
        return _subscription_view(sub, with_secret=existing is None)

    @app.delete("/subscriptions/{subscription_id}", status_code=204)
    def delete_subscription(subscription_id: TopicId, who: Owner) -> None:
        owned(subscription_id, who)
        store.delete_subscription(subscription_id)
        routes.invalidate()

    # --- delivery log and live stream -----------------------------------------------------

    @app.get("/deliveries")
    def deliveries(
        who: Owner,
        subscription: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        status: Literal["pending", "delivered", "dead"] | None = None,
        since: Annotated[datetime | None, Query(description="ISO 8601 time with a zone")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        if since is not None and since.tzinfo is None:
            raise _unprocessable(["query", "since"], "expected a time with a zone, e.g. 2026-11-25T08:00:00Z")
        if subscription is not None:
            owned(subscription, who)
        rows = store.deliveries(
            owner=who,
            subscription_id=subscription,
            status=status,
            since=since.timestamp() if since else None,
            limit=limit,
        )
        also: dict[tuple[str, str], list[dict[str, str]]] = {}
        by_subscription: dict[str, list[str]] = {}
        for row in rows:
            if row.item_id:
                by_subscription.setdefault(row.subscription_id, []).append(row.item_id)
        for sub_id, item_ids in by_subscription.items():
            for item_id, reports in store.also_reported(sub_id, item_ids).items():
                also[(sub_id, item_id)] = [
                    {"title": r.title, "url": r.url, "source": r.source} for r in reports
                ]
        return [
            {**row.as_dict(), "also_reported_by": also.get((row.subscription_id, row.item_id or ""), [])}
            for row in rows
        ]

    @app.get("/alerts/stream")
    async def stream(
        who: Owner,
        request: Request,
        topic: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        subscription: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: each alert delivered from now on to the owner's subscriptions."""
        if hub is None:
            raise HTTPException(503, "the alert stream is not running")
        mine = {s.id for s in await asyncio.to_thread(store.subscriptions, who)}
        if subscription is not None and subscription not in mine:
            raise HTTPException(404, f"no subscription {subscription!r}")

        def wanted(alert: Alert) -> bool:
            return (
                alert.subscription_id in mine
                and (topic is None or alert.topic_id == topic)
                and (subscription is None or alert.subscription_id == subscription)
            )

        async def events() -> AsyncIterator[str]:
            queue = hub.subscribe()
            try:
                yield ": connected\n\n"
                while not await request.is_disconnected():
                    try:
                        alert = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if wanted(alert):
                        yield f"event: alert\nid: {alert.alert_id}\ndata: {alert.model_dump_json()}\n\n"
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    # --- apply ---------------------------------------------------------------------------

    @app.post("/apply")
    async def apply(request: Request, who: Owner) -> dict[str, Any]:
        """Upserts the topics and subscriptions of a YAML (or JSON) document."""
        raw = await request.body()
        try:
            data = yaml.safe_load(raw.decode("utf-8")) if raw.strip() else {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise _unprocessable(["body"], f"not valid YAML: {exc}", "yaml") from exc
        if not isinstance(data, dict):
            raise _unprocessable(["body"], "expected a mapping with topics: and/or subscriptions:")
        try:
            document = ApplyDocument.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from exc
        for index, topic in enumerate(document.topics):
            check_query(topic.query, ["body", "topics", index, "query"])
        defined = {t.id for t in document.topics}
        for index, sub in enumerate(document.subscriptions):
            await asyncio.to_thread(
                check_topics, sub.topics, defined, ["body", "subscriptions", index, "topics"]
            )
            existing = await asyncio.to_thread(store.subscription, sub.id)
            if existing is not None and existing.owner != who:
                raise _unprocessable(
                    ["body", "subscriptions", index, "id"], f"{sub.id!r} belongs to another owner"
                )
        for topic in document.topics:
            await asyncio.to_thread(save_topic, topic.id, topic.query, who)
        secrets: dict[str, str] = {}
        for sub in document.subscriptions:
            new = await asyncio.to_thread(store.subscription, sub.id) is None
            saved = await asyncio.to_thread(store.put_subscription, sub, who)
            if new:
                secrets[sub.id] = saved.secret
        routes.invalidate()
        return {
            "topics": [t.id for t in document.topics],
            "subscriptions": [s.id for s in document.subscriptions],
            "secrets": secrets,
        }

    return app


def _duration(value: str, loc: list[str | int]) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _unprocessable(loc, str(exc)) from exc
    if seconds <= 0:
        raise _unprocessable(loc, "must be more than 0s")
    return seconds


class ApiServer:
    """uvicorn in a thread; ``port`` 0 picks a free port (see ``bound_port``)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, name="notifier-api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)
        if not self._server.started:
            raise NewswatchError("the notifier API did not start (is its port free?)")

    @property
    def bound_port(self) -> int:
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


__all__ = ["ApiServer", "make_app"]
