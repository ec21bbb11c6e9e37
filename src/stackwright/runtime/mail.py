"""Send email through the ``mail`` resource a service uses: SMTP locally, the SES v2 API on AWS.

``<NAME>_URL`` picks the transport — ``smtp://host:port`` (the local server ``stackwright up`` runs) or
``ses://<region>`` (Amazon SES; credentials from the pod's IRSA role) — and ``<NAME>_SENDER`` is the
From address. Both transports are blocking libraries (smtplib, boto3) run in a worker thread, so the
event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

from .settings import resource_env

#: Seconds one SMTP connection or SES call may take before :class:`MailError`.
TIMEOUT_S = 10.0


class MailError(RuntimeError):
    """The message could not be handed to the mail server (refused, unreachable, timed out)."""


class Mailer:
    """Sends plain-text messages from one sender.

    ``url``: ``smtp://host:port`` or ``ses://region``. Raises ValueError for another scheme.
    """

    def __init__(self, url: str, sender: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "ses"):
            raise ValueError(f"mail URL must be smtp://host:port or ses://region, not {url!r}")
        self.url = url
        self.sender = sender
        self._parts = parts
        self._ses: Any = None

    @classmethod
    def from_env(cls, resource: str) -> Mailer:
        """The mailer of resource ``resource`` from ``<NAME>_URL`` and ``<NAME>_SENDER``; KeyError names a
        missing variable."""
        url_var, sender_var = resource_env(resource), resource_env(resource, "SENDER")
        for var in (url_var, sender_var):
            if var not in os.environ:
                raise KeyError(f"{var} is not set (does the service use the mail resource {resource!r}?)")
        return cls(os.environ[url_var], os.environ[sender_var])

    async def send(self, to: str | list[str], subject: str, body: str, *, reply_to: str | None = None) -> str:
        """Send one message; returns its message id (the Message-ID header over SMTP, SES's MessageId).

        Raises :class:`MailError` when the server refuses or cannot be reached."""
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        send = self._send_smtp if self._parts.scheme == "smtp" else self._send_ses
        try:
            return await asyncio.to_thread(send, recipients, subject, body, reply_to)
        except MailError:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"sending mail via {self.url} failed: {exc}") from exc

    def _send_smtp(self, to: list[str], subject: str, body: str, reply_to: str | None) -> str:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg["Message-ID"] = message_id = make_msgid(domain=self.sender.rpartition("@")[2])
        if reply_to:
            msg["Reply-To"] = reply_to
        msg.set_content(body)
        with smtplib.SMTP(self._parts.hostname or "127.0.0.1", self._parts.port or 25, timeout=TIMEOUT_S) as smtp:
            refused = smtp.send_message(msg)
        if refused:
            raise MailError(f"the mail server refused {', '.join(sorted(refused))}")
        return message_id

    def _send_ses(self, to: list[str], subject: str, body: str, reply_to: str | None) -> str:
        if self._ses is None:
            import boto3
            from botocore.config import Config

            self._ses = boto3.client("sesv2", region_name=self._parts.netloc, config=Config(
                connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"mode": "standard"}))
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {
            "FromEmailAddress": self.sender, "Destination": {"ToAddresses": to},
            "Content": {"Simple": {"Subject": {"Data": subject, "Charset": "UTF-8"},
                                   "Body": {"Text": {"Data": body, "Charset": "UTF-8"}}}}}
        if reply_to:
            request["ReplyToAddresses"] = [reply_to]
        try:
            return str(self._ses.send_email(**request)["MessageId"])
        except (BotoCoreError, ClientError) as exc:
            raise MailError(f"SES send_email failed: {exc}") from exc
