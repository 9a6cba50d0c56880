"""How a person reaches the notifier without holding an API token in hand: web sessions,
single-use links mailed to them, and the capability URLs of a subscription.

- A **session** is what a browser keeps after signing in (by presenting a token once, or by
  a mailed link): a random cookie, stored as its SHA-256, bound to the token it acts as, so
  revoking the token (or its expiry) ends the session too. Each session has a CSRF secret
  that every form it posts must carry.
- A **link** (sign in, confirm a subscription) is single-use and expires; only its SHA-256
  is stored, so a database dump cannot use one.
- A **capability** (a subscription's alert feed, the unsubscribe link of its emails) is a URL
  meant to be handed to a feed reader or read in every email: it is stored as it is (the app
  shows it again), it grants only that one thing, it can be revoked, and it is never the
  account's token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from newswatch.notifier.schema import CAPABILITIES, LINKS, SESSIONS
from newswatch.notifier.tokens import token_hash
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.db import transaction

LINK_KINDS = ("signin", "confirm")
CAPABILITY_KINDS = ("feed", "unsubscribe")


_digest = token_hash  # secrets are stored hashed, as tokens are: a dump grants nothing


@dataclass(frozen=True)
class Session:
    token_id: str
    csrf: str
    expires_at: float


class Sessions:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    def start(self, token_id: str, lifetime: float) -> tuple[str, Session]:
        """A new session acting as ``token_id``: the cookie value (given once) and the session."""
        cookie = secrets.token_urlsafe(32)
        now = self._clock.time()
        session = Session(token_id, secrets.token_urlsafe(24), now + lifetime)
        with transaction(self._engine, "starting a session") as conn:
            conn.execute(
                SESSIONS.insert().values(
                    session_hash=_digest(cookie),
                    token_id=token_id,
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                    last_seen_at=now,
                )
            )
        return cookie, session

    def find(self, cookie: str) -> Session | None:
        """The live session of a cookie, else None (unknown, ended or expired)."""
        with transaction(self._engine, "reading a session") as conn:
            row = conn.execute(
                select(SESSIONS.c.token_id, SESSIONS.c.csrf, SESSIONS.c.expires_at).where(
                    SESSIONS.c.session_hash == _digest(cookie)
                )
            ).first()
        if row is None or row[2] <= self._clock.time():
            return None
        return Session(row[0], row[1], row[2])

    def end(self, cookie: str) -> None:
        with transaction(self._engine, "ending a session") as conn:
            conn.execute(SESSIONS.delete().where(SESSIONS.c.session_hash == _digest(cookie)))

    def prune(self) -> int:
        with transaction(self._engine, "pruning sessions") as conn:
            done = conn.execute(SESSIONS.delete().where(SESSIONS.c.expires_at <= self._clock.time()))
            return done.rowcount


class Links:
    """Single-use, expiring links: ``issue`` gives the secret to mail (and spends the subject's
    older ones), ``redeem`` spends it."""

    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    def issue(self, kind: str, subject: str, lifetime: float) -> str:
        if kind not in LINK_KINDS:
            raise ValueError(f"link kind must be one of {', '.join(LINK_KINDS)}, got {kind!r}")
        secret = secrets.token_urlsafe(32)
        now = self._clock.time()
        with transaction(self._engine, f"issuing a {kind} link") as conn:
            # Only the newest link of a subject works: an older confirmation must not confirm
            # an address the subscription no longer has.
            conn.execute(
                update(LINKS)
                .where(LINKS.c.kind == kind, LINKS.c.subject == subject, LINKS.c.used_at.is_(None))
                .values(used_at=now)
            )
            conn.execute(
                LINKS.insert().values(
                    link_hash=_digest(secret),
                    kind=kind,
                    subject=subject,
                    created_at=now,
                    expires_at=now + lifetime,
                )
            )
        return secret

    def recent(self, kind: str, subject: str, within: float) -> bool:
        """Whether a link of this kind was issued for ``subject`` in the last ``within`` seconds."""
        with transaction(self._engine, f"checking recent {kind} links") as conn:
            found = conn.execute(
                select(LINKS.c.link_hash)
                .where(
                    LINKS.c.kind == kind,
                    LINKS.c.subject == subject,
                    LINKS.c.created_at > self._clock.time() - within,
                )
                .limit(1)
            ).first()
        return found is not None

    def peek(self, kind: str, secret: str) -> str | None:
        """The subject of a usable link, without spending it (the page before the button)."""
        with transaction(self._engine, f"reading a {kind} link") as conn:
            row = conn.execute(
                select(LINKS.c.subject).where(
                    LINKS.c.link_hash == _digest(secret),
                    LINKS.c.kind == kind,
                    LINKS.c.used_at.is_(None),
                    LINKS.c.expires_at > self._clock.time(),
                )
            ).first()
        return None if row is None else str(row[0])

    def redeem(self, kind: str, secret: str) -> str | None:
        """Spends a usable link and returns its subject; None if it is unknown, used or expired.
        Two clicks at once: exactly one wins (the update is conditional)."""
        now = self._clock.time()
        digest = _digest(secret)
        with transaction(self._engine, f"redeeming a {kind} link") as conn:
            done = conn.execute(
                update(LINKS)
                .where(
                    LINKS.c.link_hash == digest,
                    LINKS.c.kind == kind,
                    LINKS.c.used_at.is_(None),
                    LINKS.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if done.rowcount != 1:
                return None
            subject: str = conn.execute(
                select(LINKS.c.subject).where(LINKS.c.link_hash == digest)
            ).scalar_one()
        return subject

    def prune(self) -> int:
        """Forgets links that expired a day ago (used or not)."""
        with transaction(self._engine, "pruning links") as conn:
            done = conn.execute(LINKS.delete().where(LINKS.c.expires_at < self._clock.time() - 86400.0))
            return done.rowcount


class Capabilities:
    """Per subscription: one live token per kind (``feed``, ``unsubscribe``)."""

    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self._engine = engine
        self._clock = clock

    def get(self, kind: str, subscription_id: str) -> str:
        """The live token of this kind, made on first use."""
        if kind not in CAPABILITY_KINDS:
            raise ValueError(f"capability kind must be one of {', '.join(CAPABILITY_KINDS)}, got {kind!r}")
        with transaction(self._engine, f"reading the {kind} token of {subscription_id}") as conn:
            found = conn.execute(
                select(CAPABILITIES.c.token).where(
                    CAPABILITIES.c.subscription_id == subscription_id,
                    CAPABILITIES.c.kind == kind,
                    CAPABILITIES.c.revoked_at.is_(None),
                )
            ).first()
            if found is not None:
                return str(found[0])
            token = secrets.token_urlsafe(24)
            conn.execute(
                CAPABILITIES.insert().values(
                    token=token, kind=kind, subscription_id=subscription_id, created_at=self._clock.time()
                )
            )
            return token

    def rotate(self, kind: str, subscription_id: str) -> str:
        """Revokes the live token of this kind and makes a new one."""
        self.revoke(kind, subscription_id)
        return self.get(kind, subscription_id)

    def revoke(self, kind: str, subscription_id: str) -> None:
        with transaction(self._engine, f"revoking the {kind} token of {subscription_id}") as conn:
            conn.execute(
                update(CAPABILITIES)
                .where(
                    CAPABILITIES.c.subscription_id == subscription_id,
                    CAPABILITIES.c.kind == kind,
                    CAPABILITIES.c.revoked_at.is_(None),
                )
                .values(revoked_at=self._clock.time())
            )

    def subscription(self, kind: str, token: str) -> str | None:
        """The subscription a live token of this kind belongs to, else None."""
        with transaction(self._engine, f"checking a {kind} token") as conn:
            found = conn.execute(
                select(CAPABILITIES.c.subscription_id).where(
                    CAPABILITIES.c.token == token,
                    CAPABILITIES.c.kind == kind,
                    CAPABILITIES.c.revoked_at.is_(None),
                )
            ).first()
        return None if found is None else str(found[0])
