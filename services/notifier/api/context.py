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

from newswatch.matcher.errors import QueryError
from newswatch.matcher.topics import Compiler
from newswatch.notifier.channels import destination_refusal
from newswatch.notifier.database import NotifierDb
from newswatch.notifier.intake import Routes
from newswatch.notifier.stream import AlertHub
from newswatch.notifier.tokens import TokenInfo
from newswatch.shared.config import Config
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
    _compiler: list[Compiler] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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


def caller(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenInfo:
    """The holder of the request's bearer token (or of its signed-in session), or 401."""
    session: TokenInfo | None = getattr(request.state, "session_token", None)
    if session is not None:
        return session
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
