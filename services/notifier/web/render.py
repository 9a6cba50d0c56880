"""The web app's templates (Jinja2, autoescaped) and what every page gets: the visitor, the
CSRF secret for its forms, the static files' names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from newswatch import __version__
from newswatch.notifier.preview import segments
from newswatch.notifier.render import web_url
from newswatch.notifier.web.session import Visitor

HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["web_url"] = web_url


def _when(value: float | datetime | None) -> str:
    """A time for people: 2026-12-05 14:03 UTC."""
    if value is None:
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _segments(why: dict[str, Any]) -> list[tuple[str, bool]]:
    """A reason's snippet as (text, is a hit) runs (``preview.segments`` for a reason as JSON)."""
    return segments(str(why.get("snippet", "")), why.get("highlights", []))


templates.env.filters["when"] = _when
templates.env.filters["segments"] = _segments


def page(
    request: Request, name: str, visitor: Visitor | None, status_code: int = 200, **values: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {
            "visitor": visitor,
            "csrf": visitor.session.csrf if visitor else "",
            "htmx": HTMX,
            "version": __version__,
            **values,
        },
        status_code=status_code,
    )
