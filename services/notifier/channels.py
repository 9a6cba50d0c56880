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
import smtplib
import ssl
from collections.abc import Callable
from concurrent.futures import Executor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import apprise

from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.model import Outgoing
from newswatch.notifier.render import render, subject
from newswatch.notifier.webhook import WebhookClient, alert_body, digest_body, post_webhook
from newswatch.shared.config import SmtpSettings


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
    """SMTP with ``smtplib`` (standard library): text and HTML alternatives, one Message-ID
    per alert so mail clients thread and dedup a retried send."""

    def __init__(self, settings: SmtpSettings, connect: Callable[..., smtplib.SMTP] | None = None) -> None:
        self._settings = settings
        self._connect = connect

    def send(self, out: Outgoing) -> None:
        settings = self._settings
        recipient = out.to[len("mailto:") :].split("?", 1)[0]
        message = EmailMessage()
        message["Subject"] = subject(out.views, out.digest)
        message["From"] = settings.sender
        message["To"] = recipient
        message["Date"] = formatdate(out.sent_at.timestamp(), usegmt=True)
        message["Message-ID"] = make_msgid(idstring=out.message_id, domain="newswatch")
        message.set_content(render(out.views, out.subscription_id, "text"))
        message.add_alternative(render(out.views, out.subscription_id, "html"), subtype="html")
        try:
            with self._open() as smtp:
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _msg in exc.recipients.values()]
            permanent = all(500 <= code < 600 for code in codes)
            raise DeliveryError(
                f"{recipient}: refused {codes}",
                permanent=permanent,
                reason="smtp_5xx" if permanent else "smtp_4xx",
            ) from exc
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600 and exc.smtp_code != 554  # 554 may be transient policy
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                permanent=permanent,
                reason="smtp_5xx" if exc.smtp_code >= 500 else "smtp_4xx",
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"SMTP {settings.host}:{settings.port}: {type(exc).__name__}: {exc}",
                permanent=False,
                reason="network",
            ) from exc

    def _open(self) -> smtplib.SMTP:
        settings = self._settings
        if self._connect is not None:
            return self._connect()
        cafile = str(settings.ca_file) if settings.ca_file else None
        if settings.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=ssl.create_default_context(cafile=cafile),
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            if settings.security == "starttls":
                smtp.starttls(context=ssl.create_default_context(cafile=cafile))
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        return smtp


class AppriseChannel:
    """Everything else, through Apprise's plugins (not hand-written senders). Apprise
    reports only success or failure, so a failure is treated as transient and retried."""

    def send(self, out: Outgoing) -> None:
        notifier = apprise.Apprise()
        if not notifier.add(out.to):
            raise DeliveryError("notification URL not accepted by Apprise", permanent=True, reason="bad_url")
        body = render(out.views, out.subscription_id, "markdown")
        ok = notifier.notify(
            body=body, title=subject(out.views, out.digest), body_format=apprise.NotifyFormat.MARKDOWN
        )
        if not ok:
            raise DeliveryError(
                "Apprise could not deliver the notification", permanent=False, reason="apprise"
            )


def channels(client: WebhookClient, smtp: SmtpSettings, pool: Executor) -> dict[str, Channel]:
    """Every channel, its sends run in ``pool`` (the sender threads)."""
    return {
        "webhook": InThreads(WebhookChannel(client), pool),
        "email": InThreads(EmailChannel(smtp), pool),
        "apprise": InThreads(AppriseChannel(), pool),
    }
