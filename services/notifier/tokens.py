"""API bearer tokens: who a request acts as, and what it may do.

A token has an owner and a role. ``admin`` manages shared things: topics (create, change,
delete, backfill), ``apply``, and tokens. ``subscriber`` manages its owner's subscriptions
and may test queries within the limits. A token may expire, can be revoked, and records when
it was last used (to the minute). Only a token's SHA-256 is stored, so a database dump grants
no access and a token is shown once, when it is made; ``token_id`` (12 hex characters, not a
secret) names it in lists and for revocation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from newswatch.notifier.schema import TOKENS
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.db import transaction

Role = Literal["admin", "subscriber"]
ROLES: tuple[Role, ...] = ("admin", "subscriber")
#: last_used_at is written at most this often per token (a write per request would not scale).
_TOUCH_EVERY = 60.0


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a database dump does not grant API access."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    owner: str
    name: str
    role: Role
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    email: str | None = None

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.token_id,
            "owner": self.owner,
            "name": self.name,
            "role": self.role,
            "email": self.email,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked_at is not None,
        }


class Tokens:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    def create(
        self,
        owner: str,
        name: str = "",
        role: Role = "subscriber",
        expires_at: float | None = None,
        email: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token (shown once) and what is stored of it. ``email``: the holder's address,
        to which the web app may mail a sign-in link."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        token = "nwt_" + secrets.token_urlsafe(32)
        digest = token_hash(token)
        email = email.strip().lower() if email else None
        info = TokenInfo(digest[:12], owner, name, role, self._clock.time(), expires_at, None, None, email)
        with transaction(self._engine, "creating a token") as conn:
            conn.execute(
                TOKENS.insert().values(
                    token_hash=digest,
                    token_id=info.token_id,
                    owner=owner,
                    name=name,
                    role=role,
                    created_at=info.created_at,
                    expires_at=expires_at,
                    email=email,
                )
            )
        return token, info

    def authenticate(self, token: str) -> TokenInfo | None:
        """The token's holder if it is known, not revoked and not expired; else None."""
        now = self._clock.time()
        with transaction(self._engine, "checking a token") as conn:
            row = conn.execute(select(*_COLUMNS).where(TOKENS.c.token_hash == token_hash(token))).first()
            if row is None:
                return None
            info = _info(row)
            if not info.live(now):
                return None
            if info.last_used_at is None or now - info.last_used_at >= _TOUCH_EVERY:
                conn.execute(
                    update(TOKENS).where(TOKENS.c.token_id == info.token_id).values(last_used_at=now)
                )
        return info

    def by_id(self, token_id: str) -> TokenInfo | None:
        """The live token named ``token_id`` (a web session acts as it), else None."""
        with transaction(self._engine, "reading a token") as conn:
            row = conn.execute(select(*_COLUMNS).where(TOKENS.c.token_id == token_id)).first()
        info = None if row is None else _info(row)
        return info if info is not None and info.live(self._clock.time()) else None

    def by_email(self, email: str) -> TokenInfo | None:
        """The newest live token of the holder of ``email``, else None."""
        with transaction(self._engine, "finding a token by address") as conn:
            rows = conn.execute(
                select(*_COLUMNS)
                .where(TOKENS.c.email == email.strip().lower())
                .order_by(TOKENS.c.created_at.desc())
            )
            found = [_info(row) for row in rows]
        now = self._clock.time()
        return next((info for info in found if info.live(now)), None)

    def list(self, owner: str | None = None) -> list[TokenInfo]:
        query = select(*_COLUMNS).order_by(TOKENS.c.created_at)
        if owner is not None:
            query = query.where(TOKENS.c.owner == owner)
        with transaction(self._engine, "listing tokens") as conn:
            return [_info(row) for row in conn.execute(query)]

    def revoke(self, token_id: str) -> bool:
        """Revokes the token named ``token_id``; False if there is none (or it was revoked)."""
        with transaction(self._engine, f"revoking token {token_id}") as conn:
            done = conn.execute(
                update(TOKENS)
                .where(TOKENS.c.token_id == token_id, TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=self._clock.time())
            )
            return done.rowcount > 0


_COLUMNS = (
    TOKENS.c.token_id,
    TOKENS.c.owner,
    TOKENS.c.name,
    TOKENS.c.role,
    TOKENS.c.created_at,
    TOKENS.c.expires_at,
    TOKENS.c.last_used_at,
    TOKENS.c.revoked_at,
    TOKENS.c.email,
)


def _info(row: Any) -> TokenInfo:
    return TokenInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])
