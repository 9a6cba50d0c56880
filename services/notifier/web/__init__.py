"""The web app, served by the notifier on the API's port: ``/app/…`` pages for people who
subscribe to alerts, ``/feeds/…`` alert feeds, ``/u/…`` unsubscribe and ``/confirm/…``
links, ``/static/…`` (the CSS, a little script, htmx 2.0.11 vendored: no CDN, no build).

Pages are rendered on the server from Jinja2 templates and work without JavaScript; htmx
makes the query preview live and a small script shows alerts as they arrive (the API's
``/alerts/stream``). See ``session`` for sign-in, CSRF and the security headers.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from newswatch.notifier.web import pages, public
from newswatch.notifier.web.render import HERE, page
from newswatch.notifier.web.session import SignInRequired, visitor

#: Paths answered with HTML pages (errors too); everything else is the JSON API.
HTML_PREFIXES = ("/app/", "/u/", "/confirm/")


def install(app: FastAPI) -> None:
    app.include_router(public.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/app/signin?next={exc.path}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith(HTML_PREFIXES):
            return await http_exception_handler(request, exc)
        who = visitor(request) if request.url.path.startswith("/app/") else None
        detail = exc.detail if isinstance(exc.detail, str) else "That request was not valid."
        title = {403: "Not allowed", 404: "Not found"}.get(exc.status_code, "Something went wrong")
        return page(request, "notice.html.j2", who, status_code=exc.status_code, title=title, text=detail)
