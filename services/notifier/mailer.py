"""Sending an email over SMTP (``smtplib``, standard library) to the configured server only,
through the egress guard, with the server's answers mapped to DeliveryError: permanent (the
address is refused: retrying cannot help) or transient. Alerts (``channels.EmailChannel``)
and the web app's own mails (a subscription's confirmation, a sign-in link) share it."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

from newswatch.notifier.errors import DeliveryError
from newswatch.shared.config import SmtpSettings
from newswatch.shared.netguard import GuardedSMTP, GuardedSMTPSSL, NetGuard, blocked_here, clear_blocked


class Mailer:
    def __init__(
        self,
        settings: SmtpSettings,
        guard: NetGuard,
        connect: Callable[..., smtplib.SMTP] | None = None,
    ) -> None:
        self._settings = settings
        self._guard = guard
        self._connect = connect

    @property
    def sender(self) -> str:
        return self._settings.sender

    def send(self, message: EmailMessage, recipient: str) -> None:
        """Sends ``message`` (its From is set here) to ``recipient``; raises DeliveryError."""
        settings = self._settings
        if "From" not in message:
            message["From"] = settings.sender
        clear_blocked()
        try:
            with self._open() as smtp:
                smtp.send_message(message, to_addrs=[recipient])
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
            blocked = blocked_here()
            raise DeliveryError(
                f"SMTP {settings.host}:{settings.port}: {blocked or f'{type(exc).__name__}: {exc}'}",
                permanent=blocked is not None,
                reason="blocked" if blocked else "network",
            ) from exc

    def _open(self) -> smtplib.SMTP:
        settings = self._settings
        if self._connect is not None:
            return self._connect()
        cafile = str(settings.ca_file) if settings.ca_file else None
        if settings.security == "tls":
            smtp: smtplib.SMTP = GuardedSMTPSSL(
                self._guard, timeout=settings.timeout, context=ssl.create_default_context(cafile=cafile)
            )
        else:
            smtp = GuardedSMTP(self._guard, timeout=settings.timeout)
        try:
            smtp.connect(settings.host, settings.port)
            if settings.security == "starttls":
                smtp.starttls(context=ssl.create_default_context(cafile=cafile))
            if settings.username:
                password = settings.password.get_secret_value() if settings.password else ""
                smtp.login(settings.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp
