"""Notification worker: emails the payer about each payment outcome it consumes from payment-events (its
own consumer group), through the ``mail`` resource (a local SMTP server, SES on AWS).

Delivery is at-least-once: a message whose send fails is not acked and comes back; a crash between the
send and the ack can send one email twice. Payers without an email address get none.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from stackwright.runtime import Service, consume

log = logging.getLogger("notification")

svc = Service(title="notification")
app = svc.app
payment_events = svc.topic("payment-events")

SUBJECTS = {"payment.settled": "Payment sent", "payment.declined": "Payment declined",
            "payment.held": "Payment held for review", "payment.rejected": "Payment rejected"}
_mailer: Any = None


def mailer() -> Any:
    """The Mailer of the ``mail`` resource, or None when the service has no MAIL_URL (no mail resource)."""
    global _mailer
    if _mailer is None and os.environ.get("MAIL_URL"):
        from stackwright.runtime.mail import Mailer  # the mail kind's client

        _mailer = Mailer.from_env("mail")
    return _mailer


def message_for(event: dict[str, Any]) -> tuple[str, str] | None:
    """(subject, body) of the email for a payment event, or None for an event that sends none."""
    subject = SUBJECTS.get(str(event.get("type")))
    if subject is None or not event.get("payer_email"):
        return None
    amount = int(event["amount"])
    lines = [f"Payment {event.get('payment_id')}: {amount // 100}.{amount % 100:02d} {event['currency']}",
             f"from account {event['from_account']} to account {event['to_account']}",
             f"status: {event['status']}"]
    if event.get("reasons"):
        lines.append("reasons: " + ", ".join(event["reasons"]))
    return f"{subject}: {amount // 100}.{amount % 100:02d} {event['currency']}", "\n".join(lines) + "\n"


async def _notify(messages: list[Any]) -> None:
    for message in messages:
        made = message_for(message.body)
        if made is None:
            continue
        m = mailer()
        if m is None:
            log.warning("no mail resource (MAIL_URL unset): not sending %r", made[0])
            continue
        await m.send(to=message.body["payer_email"], subject=made[0], body=made[1])


#: After a batch smaller than ``batch_size``, wait this long (seconds) before receiving again: under load
#: one receive and one ack then serve many events instead of one or two (see ``consume``'s ``linger_s``).
LINGER_S = float(os.environ.get("NOTIFICATION_LINGER_S", "0.2"))


@svc.background
async def follow_payments() -> None:
    await consume(payment_events.subscription(), _notify, batch_size=20, linger_s=LINGER_S)
