"""The notifier's HTTP API (FastAPI): topics, subscriptions, the delivery log, the live
alert stream, apply and tokens, one router per resource (``topics``, ``subscriptions``,
``deliveries``, ``apply``, ``tokens``).

Every request needs ``Authorization: Bearer <token>`` (see ``context`` for the roles), the
OpenAPI document at ``/openapi.json`` included. Bad input is a 422 whose ``detail[].loc``
names the field; a body over ``notifier.max_request_bytes`` is a 413; a database or broker
outage is a 503. TLS belongs in front of it (a reverse proxy): the API speaks plain HTTP.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from newswatch import __version__
from newswatch.notifier.api import apply, deliveries, subscriptions, tokens, topics
from newswatch.notifier.api.context import ApiContext, Caller
from newswatch.shared.db import StoreError
from newswatch.shared.errors import NewswatchError

log = logging.getLogger(__name__)
__all__ = ["ApiContext", "ApiServer", "make_app"]


def make_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="newswatch notifier API",
        version=__version__,
        description="Topics, subscriptions, the delivery log and a live alert stream.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind a token like everything else
    )
    app.state.context = ctx
    for module in (topics, subscriptions, deliveries, apply, tokens):
        app.include_router(module.router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(who: Caller) -> dict[str, Any]:
        return app.openapi()

    @app.exception_handler(StoreError)
    async def _store_down(_request: Request, exc: StoreError) -> JSONResponse:
        log.error("API request failed: database", extra={"error": str(exc)})
        return JSONResponse({"detail": "the state database is unavailable; try again"}, status_code=503)

    @app.exception_handler(NewswatchError)
    async def _broker_down(_request: Request, exc: NewswatchError) -> JSONResponse:
        log.error("API request failed", extra={"error": str(exc)})
        return JSONResponse({"detail": str(exc)}, status_code=503)

    return BodyLimit(app, ctx.config.notifier.max_request_bytes)  # type: ignore[return-value]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413, by its Content-Length or, when it
    has none, as soon as more arrived: nothing reads an unbounded body into memory."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __getattr__(self, name: str) -> Any:  # the wrapped app's state, routes, openapi …
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {"detail": f"request body over {self.limit} bytes (notifier.max_request_bytes)"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ApiServer:
    """uvicorn in a thread; ``port`` 0 picks a free port (see ``bound_port``)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
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
