"""Notifier test parts: a settable clock, a real SMTP server (aiosmtpd), matches, and a
driver that runs the dispatcher until what a test waits for has happened."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from newswatch.notifier.dispatcher import Dispatcher
from newswatch.shared.clock import ManualClock
from newswatch.shared.contract import Item, Match, MatchReason, Source
from newswatch.shared.processes import free_port

#: Epoch seconds that only move when the test says so.
Clock = ManualClock


class SmtpSink:
    """A real SMTP server on 127.0.0.1 keeping every message it accepts.

    ``refuse`` maps a recipient to an SMTP reply (e.g. ``"550 no such user"``).
    """

    def __init__(self, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None) -> None:
        """``tls``: offer STARTTLS and require it; ``login``: require AUTH with this user and password."""
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_RCPT(
                self, server: Any, session: Any, envelope: Any, address: str, options: Any
            ) -> str:
                reply = sink.refuse.get(address)
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = message_from_bytes(envelope.content, policy=policy.default)
                with sink._lock:
                    sink.messages.append(message)
                return "250 Message accepted"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = login is not None and (data.login.decode(), data.password.decode()) == login
            return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 on failure

        self.port = free_port()
        options: dict[str, Any] = {}
        if tls is not None:
            options.update(tls_context=tls, require_starttls=True)
        if login is not None:
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls is not None)
            options.update(auth_exclude_mechanism=["LOGIN"])  # PLAIN only: a refusal is one clean 535
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)


def make_match(
    item_id: str,
    title: str,
    summary: str = "",
    topic: str = "nk",
    source: str = "World",
    host: str = "127.0.0.1",
    fetched_at: datetime | None = None,
    revision: int = 1,
) -> Match:
    fetched = fetched_at or datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    item = Item(
        item_id=item_id.ljust(8, "_"),
        kind="update" if revision > 1 else "new",
        revision=revision,
        title=title,
        summary=summary,
        url=f"http://{host}/{item_id}",
        fetched_at=fetched,
        source=Source(feed_url=f"http://{host}/{source.lower()}.xml", feed_title=source, host=host),
    )
    first = title.split(maxsplit=1)[0] if title else "x"
    reason = MatchReason(terms={first: [first]}, snippet=title, highlights=[(0, len(first))], score=0.5)
    return Match(topic_id=topic, query=first, item=item, reason=reason, matched_at=fetched)


def drive(dispatcher: Dispatcher, done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Runs the dispatcher (sends finish on its threads) until ``done()``, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.run_once()
        for _ in range(200):
            if dispatcher.idle():
                break
            time.sleep(0.01)
        if done():
            return
        time.sleep(0.02)
    raise AssertionError(f"dispatcher did not get there within {timeout}s")
