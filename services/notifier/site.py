"""The notifier's one HTTP server: the JSON API (``api``) and the web app (``web``) on one
port, behind two ASGI wrappers every answer passes: a request-body limit (413) and the
security headers (CSP and friends; they cost the API nothing). It sits above both packages
so that ``web`` may use the API's helpers while ``api`` knows nothing of pages."""

from __future__ import annotations

import json
import threading
from typing import Any

import uvicorn

from newswatch.notifier import web
from newswatch.notifier.api import ApiContext, make_api
from newswatch.notifier.web.session import HEADERS
from newswatch.shared.errors import NewswatchError

__all__ = ["ApiServer", "BodyLimit", "SecurityHeaders", "make_app"]


def make_app(ctx: ApiContext) -> Any:
    """The ASGI app the notifier serves (``ApiServer`` runs it)."""
    app = make_api(ctx)
    web.install(app)
    return SecurityHeaders(BodyLimit(app, ctx.config.notifier.max_request_bytes))


class SecurityHeaders:
    """Adds the security headers to every answer (the API's too: they cost nothing there)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


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
