"""Notification: emails the people a file event concerns (a file shared with them, their upload complete).

Messages come from the ``notifications`` queue (sent by the file and permission services). Mail goes
through the ``mail`` resource (``stackwright.runtime.mail``): a real SMTP server locally, SES on AWS. A
user's address is ``<sub>@EMAIL_DOMAIN``: the identity provider's subject is the only thing every service
knows of a user (a directory lookup would replace this function, nothing else).

At-least-once delivery, at-most-once mail per event: a message whose ``event_id`` is marked as sent in
Redis (``notified:<event_id>``, kept 2 days) is acked without sending; the mark is set right after the
send. A worker killed between the SMTP/SES acceptance and the mark sends that one mail again on
redelivery: the window is one network round trip (mail cannot join a transaction with Redis).
"""

from __future__ import annotations

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
_mailer: Any = None


def mailer() -> Any:
    """The process's Mailer (``MAIL_URL``/``MAIL_SENDER`` from the mail resource), made on first use."""
    global _mailer
    if _mailer is None:
        from stackwright.runtime.mail import Mailer

        _mailer = Mailer.from_env("mail")
    return _mailer


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


async def handle(messages: list[Any]) -> None:
    for m in messages:
        body = m.body
        key = f"notified:{body['event_id']}"
        if await cache.exists(key):
            continue  # redelivered after it was sent
        try:
            to = address_of(str(body["to_user"]))
        except ValueError as exc:
            log.warning("event %s: %s; not sent", body["event_id"], exc)
            continue
        subject, text = compose(body)
        message_id = await mailer().send(to=to, subject=subject, body=text)
        await cache.set(key, message_id or "1", ex=SENT_TTL_S)
        log.info("event %s: mailed %s (%s)", body["event_id"], to, message_id)


@svc.background
async def run() -> None:
    await consume(queue, handle, batch_size=20, wait_seconds=1.0)
