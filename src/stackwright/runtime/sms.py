"""Send SMS through the ``sms`` resource a service uses: Amazon SNS ``Publish`` to a phone number.

``<NAME>_URL`` is ``http://host:port`` (the local SNS endpoint ``stackwright up`` runs; any credentials do)
or ``sns://<region>`` (Amazon SNS; credentials from the pod's IRSA role). ``<NAME>_SMS_TYPE``
(``Transactional`` | ``Promotional``) and the optional ``<NAME>_SENDER_ID`` go with every message as the
``AWS.SNS.SMS.SMSType`` / ``AWS.SNS.SMS.SenderID`` attributes. boto3 is blocking, so it runs in a worker
thread and the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any
from urllib.parse import urlsplit

from .settings import resource_env

#: Seconds one SNS call may take (connect, then read) before :class:`SmsError`.
TIMEOUT_S = 10.0
#: E.164: a plus, a country code not starting with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
#: SNS's limit for one SMS publish (it splits longer text into up to 10 parts), in bytes.
MAX_MESSAGE_BYTES = 1600
#: Region the local endpoint is addressed as (moto keeps state per region; any region works).
LOCAL_REGION = "us-east-1"


class SmsError(RuntimeError):
    """SNS did not accept the message (refused, unreachable, timed out)."""


class SmsSender:
    """Sends text messages to phone numbers.

    ``url``: ``http(s)://host:port`` (an SNS-compatible endpoint) or ``sns://region``; ValueError for another
    scheme. ``sms_type``: ``Transactional`` or ``Promotional``; ``sender_id``: alphanumeric sender or None.
    """

    def __init__(self, url: str, *, sms_type: str = "Transactional", sender_id: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "sns") or not parts.netloc:
            raise ValueError(f"SMS URL must be sns://region or http://host:port, not {url!r}")
        if sms_type not in ("Transactional", "Promotional"):
            raise ValueError(f"SMS type must be Transactional or Promotional, not {sms_type!r}")
        self.url = url
        self.sms_type = sms_type
        self.sender_id = sender_id or None
        self._parts = parts
        self._client: Any = None

    @classmethod
    def from_env(cls, resource: str) -> SmsSender:
        """The sender of resource ``resource`` from ``<NAME>_URL``, ``<NAME>_SMS_TYPE`` and
        ``<NAME>_SENDER_ID``; KeyError names a missing ``<NAME>_URL``."""
        url_var = resource_env(resource)
        if url_var not in os.environ:
            raise KeyError(f"{url_var} is not set (does the service use the sms resource {resource!r}?)")
        return cls(os.environ[url_var], sms_type=os.environ.get(resource_env(resource, "SMS_TYPE"), "Transactional"),
                   sender_id=os.environ.get(resource_env(resource, "SENDER_ID")))

    async def send(self, phone_number: str, message: str) -> str:
        """Send ``message`` to ``phone_number`` (E.164, ``+14155550123``); returns SNS's MessageId.

        Raises ValueError for a number that is not E.164 or an empty / over-long message (before any
        network call), :class:`SmsError` when SNS refuses it or cannot be reached."""
        if not E164.match(phone_number):
            raise ValueError(f"phone number must be E.164 (+ and up to 15 digits), not {phone_number!r}")
        if not message or len(message.encode()) > MAX_MESSAGE_BYTES:
            raise ValueError(f"an SMS must have 1 to {MAX_MESSAGE_BYTES} bytes of text")
        return await asyncio.to_thread(self._publish, phone_number, message)

    def _publish(self, phone_number: str, message: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": self.sms_type}}
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sender_id}
        try:
            reply = self._sns().publish(PhoneNumber=phone_number, Message=message, MessageAttributes=attributes)
        except (BotoCoreError, ClientError) as exc:
            raise SmsError(f"SNS publish to {self.url} failed: {exc}") from exc
        return str(reply["MessageId"])

    def _sns(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Bounded and retried a little: a notification worker would rather retry the message later.
            config = Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S,
                            retries={"mode": "standard", "max_attempts": 3})
            if self._parts.scheme == "sns":
                self._client = boto3.client("sns", region_name=self._parts.netloc, config=config)
            else:  # the local endpoint: it checks no signature, but boto3 will not sign without keys
                self._client = boto3.client("sns", region_name=LOCAL_REGION, endpoint_url=self.url, config=config,
                                            aws_access_key_id="local", aws_secret_access_key="local")
        return self._client
