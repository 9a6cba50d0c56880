"""The notifier's HTTP API (FastAPI): topics, subscriptions, the delivery log, the live
alert stream, apply and tokens, one router per resource (``topics``, ``subscriptions``,
``deliveries``, ``apply``, ``tokens``).

Every request needs ``Authorization: Bearer <token>`` (see ``context`` for the roles), the
OpenAPI document at ``/openapi.json`` included. Bad input is a 422 whose ``detail[].loc``
names the field; a body over ``notifier.max_request_bytes`` is a 413; a database or broker
outage is a 503. TLS belongs in front of it (a reverse proxy): the API speaks plain HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from newswatch import __version__
from newswatch.notifier.api import apply, deliveries, subscriptions, tokens, topics
from newswatch.notifier.api.context import ApiContext, Caller
from newswatch.shared.db import StoreError
from newswatch.shared.errors import NewswatchError

log = logging.getLogger(__name__)
__all__ = ["ApiContext", "make_api"]


def make_api(ctx: ApiContext) -> FastAPI:
    """The JSON API alone; ``newswatch.notifier.site`` serves it with the web app."""
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

    return app
