"""Notification: emails the people a file event concerns (a file shared with them, their upload complete).

Messages come from the ``notifications`` queue (sent by the file and permission services). Mail goes
through the ``mail`` resource (``stackwright.runtime.mail``): a real SMTP server locally, SES on AWS. A
user's address is ``<sub>@EMAIL_DOMAIN``: the identity provider's subject is the only thing every service
knows of a user (a directory lookup would replace this function, nothing else).

At-least-once delivery, at-most-once mail per event: a message whose ``event_id`` is marked as sent in
Redis (``notified:<event_id>``, kept 2 days) is acked without sending; the mark is set right after the
send (retried through a Redis outage, up to two minutes: a mark that failed would mean a second mail). A
worker killed between the SMTP/SES acceptance and the mark sends that one mail again on redelivery: the
window is one network round trip (mail cannot join a transaction with Redis).

SMS: a message with ``sms_to`` (the producer put the user's phone there because they opted into the event's
kind with ``PUT /me/notifications`` on the permission service) also goes out as an SMS through the ``sms``
resource (``stackwright.runtime.sms``: SNS, a local SNS endpoint locally), deduplicated the same way under
its own mark (``texted:<event_id>``), so a redelivery after the mail but before the SMS sends only the SMS.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from stackwright.runtime import Service, consume

svc = Service(title="notification")
cache = svc.redis("cache")
queue = svc.queue("notifications")
app = svc.app

log = logging.getLogger("files.notification")

EMAIL_DOMAIN = svc.settings.get("EMAIL_DOMAIN", "users.example.com") or "users.example.com"
SENT_TTL_S = 2 * 24 * 3600
#: How long a sent mail's mark waits for Redis before giving up (then the message may be mailed again).
MARK_PATIENCE_S = 120.0
_mailer: Any = None
_texter: Any = None


def mailer() -> Any:
    """The process's Mailer (``MAIL_URL``/``MAIL_SENDER`` from the mail resource), made on first use."""
    global _mailer
    if _mailer is None:
        from stackwright.runtime.mail import Mailer

        _mailer = Mailer.from_env("mail")
    return _mailer


def texter() -> Any:
    """The process's SmsSender (``SMS_URL`` and friends from the sms resource), made on first use."""
    global _texter
    if _texter is None:
        from stackwright.runtime.sms import SmsSender

        _texter = SmsSender.from_env("sms")
    return _texter


def address_of(user: str) -> str:
    """The email address of a user id (the token's ``sub``); ValueError for one that cannot be a local part."""
    local = re.sub(r"[^A-Za-z0-9._+-]", "_", user)[:64]
    if not local.strip("._"):
        raise ValueError(f"no address for user {user!r}")
    return f"{local}@{EMAIL_DOMAIN}"


def compose(body: dict[str, Any]) -> tuple[str, str]:
    """(subject, text) of a notification message."""
    name = str(body.get("name", ""))[:255]
    if body["kind"] == "share":
        what = "folder" if body.get("resource_type") == "folder" else "file"
        return (f"{body['by']} shared \"{name}\" with you",
                f"{body['by']} gave you the {body['role']} role on the {what} \"{name}\".\n\n"
                f"Open it: /{what}s/{body['resource_id']}\n")
    return (f"Upload complete: \"{name}\"",
            f"Your file \"{name}\" is uploaded and stored.\n\nOpen it: /files/{body['file_id']}\n")


def compose_sms(body: dict[str, Any]) -> str:
    """The SMS text of a notification message: one line and the link. Names are cut to 60 characters so a
    message stays short (SNS bills every 160-character GSM part, 70 with other characters, separately)."""
    name = str(body.get("name", ""))
    name = name if len(name) <= 60 else name[:57] + "..."
    if body["kind"] == "share":
        what = "folder" if body.get("resource_type") == "folder" else "file"
        return f"{str(body['by'])[:40]} shared \"{name}\" with you ({body['role']}): /{what}s/{body['resource_id']}"
    return f"Upload complete: \"{name}\" /files/{body['file_id']}"


async def handle(messages: list[Any]) -> None:
    for m in messages:
        body = m.body
        event = body["event_id"]
        try:
            to = address_of(str(body["to_user"]))
        except ValueError as exc:
            log.warning("event %s: %s; not sent", event, exc)
            continue
        mail_key, sms_key = f"notified:{event}", f"texted:{event}"
        if not await cache.exists(mail_key):  # else redelivered after it was mailed
            subject, text = compose(body)
            message_id = await mailer().send(to=to, subject=subject, body=text)
            await _mark_sent(mail_key, message_id or "1")
            log.info("event %s: mailed %s (%s)", event, to, message_id)
        phone = body.get("sms_to")
        if phone and not await cache.exists(sms_key):
            sms_id = await texter().send(phone, compose_sms(body))
            await _mark_sent(sms_key, sms_id)
            log.info("event %s: texted %s's phone (%s)", event, body["to_user"], sms_id)


async def _mark_sent(key: str, value: str) -> None:
    """Record that the mail of ``key`` went out, waiting out a Redis outage (up to MARK_PATIENCE_S).

    Once the mail is accepted, failing here would leave the message unacked and unmarked: its redelivery
    would mail the user again. Holding on until Redis answers keeps the duplicate window to a kill of this
    process between the send and the mark.
    """
    delay = 0.1
    deadline = asyncio.get_running_loop().time() + MARK_PATIENCE_S
    while True:
        try:
            await cache.set(key, value, ex=SENT_TTL_S)
            return
        except Exception as exc:  # redis errors and timeouts alike: the mark matters, not why it failed
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("marking %s as sent failed (%s); retrying in %.1fs", key, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


@svc.background
async def run() -> None:
    await consume(queue, handle, batch_size=20, wait_seconds=1.0)
