"""Delivery channels, chosen by a subscription's ``to:`` URL.

- ``http(s)://`` — signed JSON webhook (``webhook``), over a pool of kept-alive connections;
- ``mailto:`` — email over SMTP, text and HTML parts (``email``);
- anything else — Apprise (Slack, Discord, Telegram, ntfy, Teams, Matrix, Pushover, …),
  Markdown where the service renders it (``apprise``).

Each channel sends one message (an alert or a digest) and maps its library's errors to
DeliveryError: permanent (the address is wrong; retrying cannot help) or transient. Sends
block, so they run in the sender threads (``notifier.senders``), awaited by the dispatcher's
loop, which decides what goes when.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from concurrent.futures import Executor
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol
from urllib.parse import urlsplit

import apprise

from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.mailer import Mailer
from newswatch.notifier.model import Outgoing, channel_kind
from newswatch.notifier.render import render, subject
from newswatch.notifier.webhook import WebhookClient, alert_body, digest_body, post_webhook
from newswatch.shared.netguard import NetGuard, apprise_refusal, blocked_since


class Channel(Protocol):
    async def send(self, out: Outgoing) -> None:
        """Raises DeliveryError."""


class BlockingChannel(Protocol):
    def send(self, out: Outgoing) -> None:
        """Raises DeliveryError."""


class WebhookChannel:
    def __init__(self, client: WebhookClient) -> None:
        self._client = client

    def send(self, out: Outgoing) -> None:
        bodies = [
            alert_body(alert_id, out.subscription_id, match, view, out.sent_at)
            for alert_id, match, view in zip(out.alert_ids, out.matches, out.views, strict=True)
        ]
        body = (
            digest_body(out.message_id, out.subscription_id, bodies, out.sent_at) if out.digest else bodies[0]
        )
        post_webhook(self._client, out.to, out.message_id, body, out.secret, out.sent_at, out.traceparent)

    def close(self) -> None:
        self._client.close()


class InThreads:
    """A blocking channel run in a pool of threads (``Executor``), awaited from the loop."""

    def __init__(self, channel: BlockingChannel, pool: Executor) -> None:
        self._channel = channel
        self._pool = pool

    async def send(self, out: Outgoing) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._channel.send, out)

    async def aclose(self) -> None:
        closer = getattr(self._channel, "close", None)
        if closer is not None:
            closer()


class EmailChannel:
    """An alert or digest as an email: text and HTML alternatives, one Message-ID per alert
    (the same on every attempt, so mail clients thread and dedup a retried send), and a way
    out in every message: ``List-Unsubscribe`` with RFC 8058 one-click
    (``List-Unsubscribe-Post``) and a visible unsubscribe link, when ``unsubscribe_url``
    gives one for the subscription."""

    def __init__(
        self, mailer: Mailer, unsubscribe_url: Callable[[str], str | None] = lambda _s: None
    ) -> None:
        self._mailer = mailer
        self._unsubscribe_url = unsubscribe_url

    def send(self, out: Outgoing) -> None:
        recipient = out.to[len("mailto:") :].split("?", 1)[0]
        leave = self._unsubscribe_url(out.subscription_id)
        try:
            message = EmailMessage()
            message["Subject"] = subject(out.views, out.digest)
            message["To"] = recipient
            message["Date"] = formatdate(out.sent_at.timestamp(), usegmt=True)
            message["Message-ID"] = f"<{out.message_id}@newswatch>"
            if leave:
                message["List-Unsubscribe"] = f"<{leave}>"
                message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            message.set_content(render(out.views, out.subscription_id, "text", leave))
            message.add_alternative(render(out.views, out.subscription_id, "html", leave), subtype="html")
        except ValueError as exc:  # a header the email package refuses (CR/LF): retrying cannot help
            raise DeliveryError(f"cannot build the email: {exc}", permanent=True, reason="render") from exc
        self._mailer.send(message, recipient)


class AppriseChannel:
    """Everything else, through Apprise's plugins (not hand-written senders). Only plugins
    that send over HTTP are used (``apprise_refusal``): their connections go through the
    egress guard (``install_urllib3_guard``). Apprise reports only success or failure, so a
    failure is treated as transient and retried, unless the guard refused the address."""

    def send(self, out: Outgoing) -> None:
        refused = apprise_refusal(out.to)
        if refused:
            raise DeliveryError(refused, permanent=True, reason="bad_url")
        notifier = apprise.Apprise()
        if not notifier.add(out.to):
            raise DeliveryError("notification URL not accepted by Apprise", permanent=True, reason="bad_url")
        body = render(out.views, out.subscription_id, "markdown")
        started = time.monotonic()
        ok = notifier.notify(
            body=body, title=subject(out.views, out.digest), body_format=apprise.NotifyFormat.MARKDOWN
        )
        if not ok:
            blocked = blocked_since(started, urlsplit(out.to).hostname or "")
            if blocked:
                raise DeliveryError(blocked, permanent=True, reason="blocked")
            raise DeliveryError(
                "Apprise could not deliver the notification", permanent=False, reason="apprise"
            )


def destination_refusal(to: str, guard: NetGuard) -> str | None:
    """Why a subscription may not send to ``to``, or None: checked when it is created, so a
    plainly forbidden target is a 422 at once (a host written as an address that the egress
    policy refuses, a notification plugin the guard cannot cover). Names are checked again,
    resolved, each time a connection is made."""
    kind = channel_kind(to)
    if kind == "email":
        return None
    if kind == "apprise":
        refused = apprise_refusal(to)
        if refused:
            return refused
    host = urlsplit(to).hostname or ""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return (
            "localhost is not a public address"
            if host.lower() in ("localhost", "localhost.")
            and not guard.allows(ipaddress.ip_address("127.0.0.1"))
            else None
        )
    return (
        None if guard.allows(address) else f"{address} is not a public address; the egress policy refuses it"
    )


def channels(
    client: WebhookClient,
    mailer: Mailer,
    pool: Executor,
    unsubscribe_url: Callable[[str], str | None] = lambda _s: None,
) -> dict[str, Channel]:
    """Every channel, its sends run in ``pool`` (the sender threads)."""
    return {
        "webhook": InThreads(WebhookChannel(client), pool),
        "email": InThreads(EmailChannel(mailer, unsubscribe_url), pool),
        "apprise": InThreads(AppriseChannel(), pool),
    }
