"""What every API route shares: the databases, the publisher, the compiler, the limits, and
the caller (from its bearer token), with the role checks.

Roles: ``admin`` manages what is shared (topics, backfills, apply, tokens); ``subscriber``
manages its owner's subscriptions and may test queries within the limits. An owner sees
only their own subscriptions, deliveries and alerts; another owner's look like nothing
(404), so an id says nothing about who holds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from newswatch.matcher import replay
from newswatch.matcher.errors import QueryError
from newswatch.matcher.topics import Compiler
from newswatch.notifier.access import Session
from newswatch.notifier.channels import destination_refusal
from newswatch.notifier.database import NotifierDb
from newswatch.notifier.intake import Routes
from newswatch.notifier.mailer import Mailer
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.model import Subscription
from newswatch.notifier.recent import RecentItems
from newswatch.notifier.stream import AlertHub
from newswatch.notifier.tokens import TokenInfo
from newswatch.shared.config import Config
from newswatch.shared.contract import Item, Match
from newswatch.shared.durations import parse_duration
from newswatch.shared.kafka_io import Sink
from newswatch.shared.netguard import NetGuard


@dataclass
class ApiContext:
    db: NotifierDb
    publisher: Sink
    routes: Routes
    config: Config
    hub: AlertHub | None = None
    guard: NetGuard | None = None
    compiler_factory: Callable[[], Compiler] | None = None
    mailer: Mailer | None = None
    #: Sends a match to a subscription now (the dispatcher's ``send_test``); DeliveryError.
    send_test: Callable[[Subscription, Match], None] | None = None
    #: Recent items for previews; None: read from Kafka (``config``) through a cache.
    recent: RecentItems | None = None
    #: Counts the web app's events (``metrics.WEB_EVENTS``); None: not counted.
    metrics: NotifierMetrics | None = None
    #: Where the API listens once bound (``public_url`` falls back to it).
    bound_url: str | None = None
    _compiler: list[Compiler] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.recent is None:
            config = self.config

            def read(since: float) -> list[tuple[float, Item]]:
                recent = replay.recent_items(config.require_bootstrap(), config.kafka, since)
                return list(zip(recent.stamps, recent.items, strict=True))

            self.recent = RecentItems(read)

    def public_url(self) -> str:
        """The web app's address as people reach it, without a trailing slash."""
        configured = self.config.notifier.public_url
        if configured:
            return configured.rstrip("/")
        if self.bound_url:
            return self.bound_url.rstrip("/")
        return f"http://{self.config.http.host}:{self.config.http.api_port}"

    def count(self, event: str) -> None:
        """One web app event (``metrics.WEB_EVENTS``)."""
        if self.metrics is not None:
            self.metrics.web_events.labels(event).inc()

    def recent_items(self, since: float) -> list[Item]:
        assert self.recent is not None  # set in __post_init__
        return self.recent.get(since)

    def compiler(self) -> Compiler:
        """The query compiler (built on first use: the alias table takes a moment)."""
        with self._lock:
            if not self._compiler:
                factory = self.compiler_factory or (lambda: Compiler.from_settings(self.config.matcher))
                self._compiler.append(factory())
            return self._compiler[0]

    def check_destination(self, to: str, loc: list[str | int]) -> None:
        """422 when the egress policy refuses the subscription's target outright."""
        refused = destination_refusal(to, self.guard or NetGuard(self.config.allow_networks))
        if refused:
            raise unprocessable(loc, refused, "destination")

    def check_query(self, query: str, loc: list[str | int]) -> None:
        try:
            self.compiler().compile("check", query)
        except QueryError as exc:
            raise unprocessable(loc, str(exc), "query") from exc

    def lookback(self, value: str, loc: list[str | int]) -> float:
        """A duration back in time, at most ``notifier.max_lookback``."""
        seconds = duration(value, loc)
        cap = self.config.notifier.max_lookback
        if seconds > cap:
            raise unprocessable(
                loc, f"at most {cap:.0f}s back (notifier.max_lookback), got {seconds:.0f}s", "lookback"
            )
        return seconds


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found


_bearer = HTTPBearer(auto_error=False)


#: The web app's session cookie (``web.session``).
SESSION_COOKIE = "nw_session"
#: Methods a session cookie may authorize on the API: reads only. A change needs the bearer
#: token (no cookie rides along on it) or a web app form with its CSRF check.
COOKIE_METHODS = ("GET", "HEAD")


def session_of(ctx: ApiContext, cookie: str | None) -> tuple[TokenInfo, Session] | None:
    """The token and session a web app cookie stands for, if both are live."""
    if not cookie or len(cookie) > 128:
        return None
    session = ctx.db.sessions.find(cookie)
    if session is None:
        return None
    who = ctx.db.tokens.by_id(session.token_id)
    return None if who is None else (who, session)


def caller(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenInfo:
    """The holder of the request's bearer token or, for a read, of the web app's session, or
    401 (the live alert view of the web app reads ``/alerts/stream`` with its cookie)."""
    if creds is None and request.method in COOKIE_METHODS:
        signed_in = session_of(context(request), request.cookies.get(SESSION_COOKIE))
        if signed_in is not None:
            return signed_in[0]
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    found = context(request).db.tokens.authenticate(creds.credentials)
    if found is None:
        raise HTTPException(401, "unknown, expired or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return found


def admin(who: Annotated[TokenInfo, Depends(caller)]) -> TokenInfo:
    if who.role != "admin":
        raise HTTPException(403, "this needs an admin token (topics, backfills, apply and tokens are shared)")
    return who


# Module level: FastAPI reads parameter annotations by name, so they must resolve here.
Caller = Annotated[TokenInfo, Depends(caller)]
Admin = Annotated[TokenInfo, Depends(admin)]
Context = Annotated[ApiContext, Depends(context)]


def unprocessable(loc: list[str | int], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": message, "type": kind}])


def duration(value: str, loc: list[str | int]) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise unprocessable(loc, str(exc)) from exc
    if seconds <= 0:
        raise unprocessable(loc, "must be more than 0s")
    return seconds
