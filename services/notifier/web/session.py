"""Who is using the web app: the session cookie, the CSRF check of every form, and the
security headers of every answer.

The cookie is HttpOnly (no script reads it), SameSite=Lax (another site's form cannot send
it), Secure when ``notifier.public_url`` is https, and names a session stored server-side
(``access.Sessions``) that acts as one API token: revoking the token, or its expiry, signs
the browser out. A form that changes something must carry the session's CSRF secret (a
hidden field, or the ``X-CSRF-Token`` header htmx sends) and, when the browser says where it
comes from (``Origin``), come from this site.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request

from newswatch.notifier.access import Session
from newswatch.notifier.api.context import SESSION_COOKIE, context, session_of
from newswatch.notifier.tokens import TokenInfo

__all__ = ["HEADERS", "SESSION_COOKIE", "Visitor"]

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: No script from elsewhere, no inline script or style, no framing, forms post here only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True)
class Visitor:
    who: TokenInfo
    session: Session
    cookie: str

    @property
    def admin(self) -> bool:
        return self.who.role == "admin"


class SignInRequired(Exception):
    """Raised by ``signed_in``; answered with a redirect to the sign-in page."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def visitor(request: Request) -> Visitor | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    found = session_of(context(request), cookie)
    return None if found is None or cookie is None else Visitor(found[0], found[1], cookie)


def signed_in(request: Request, found: Annotated[Visitor | None, Depends(visitor)]) -> Visitor:
    if found is None:
        raise SignInRequired(request.url.path)
    return found


def same_site(request: Request) -> bool:
    """False when the browser says the request comes from another site (``Origin``)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def checked(request: Request, found: Annotated[Visitor, Depends(signed_in)]) -> Visitor:
    """A signed-in visitor whose form carries the session's CSRF secret and comes from here."""
    form = await request.form()
    given = request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD) or "")
    if not same_site(request) or not hmac.compare_digest(given.encode(), found.session.csrf.encode()):
        context(request).count("csrf_refused")
        raise HTTPException(
            403, "this form is stale or came from another site; reload the page and try again"
        )
    return found


SignedIn = Annotated[Visitor, Depends(signed_in)]
Checked = Annotated[Visitor, Depends(checked)]
MaybeVisitor = Annotated[Visitor | None, Depends(visitor)]
