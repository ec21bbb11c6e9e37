"""Pub/sub topics with fan-out (the ``topic`` resource kind): publish once, every subscriber consumes
every event in its own consumer group.

Locally the topic is a Redis stream named ``<TOPIC>_TOPIC`` and a subscriber's group is ``<TOPIC>_GROUP``
(``stackwright up`` creates the groups); on EKS ``<TOPIC>_URL`` is the SNS topic's ARN and the group is the
name of the subscriber's own SQS queue, which SNS feeds with raw message delivery.

    events = svc.topic("tenant-events")
    await events.publish({"type": "tenant.created", "tenant_id": "t_1"})
    async for ... in consume(events.subscription(), handler)   # a subscriber only

Delivery to a subscriber is at-least-once (the queue contract of :mod:`stackwright.runtime.queue`), so
handlers must be idempotent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from .queue import Queue, QueueError, queue_from_url
from .queue.base import encode_body

#: Entries a local topic stream keeps (XADD MAXLEN ~): subscribers read far behind the head only after a
#: long outage, and an unbounded stream would grow by every event ever published.
STREAM_MAXLEN = 100_000


class Topic:
    """Publisher side of a topic, plus the subscription of this service when it is a subscriber."""

    def __init__(self, url: str, name: str, *, group: str | None = None, max_receive_count: int = 5,
                 visibility_timeout: float = 30.0) -> None:
        self.url = url
        self.name = name
        self.group = group
        self.max_receive_count = max_receive_count
        self.visibility_timeout = visibility_timeout
        self._sns = url.startswith("arn:aws:sns:")
        self._redis: Any = None
        self._client: Any = None
        self._subscription: Queue | None = None

    async def publish(self, body: dict[str, Any]) -> str:
        """Publish one JSON-object event to every subscriber; returns the backend's message id.

        Raises :class:`QueueError` for a body that is not a JSON object, and the client's connection error
        when the backend is unreachable (the caller decides whether to retry).
        """
        payload = encode_body(body)
        if self._sns:
            return await asyncio.to_thread(self._publish_sns, payload)
        if self._redis is None:
            import redis.asyncio as aioredis

            from .redis_client import redis_py_options

            # Timeouts: a Redis that stops answering fails the publish (the caller's error path), not hangs it.
            self._redis = aioredis.from_url(self.url, decode_responses=True,
                                            **redis_py_options(retries=5, backoff_cap_s=0.5))
        return str(await self._redis.xadd(self.name, {"b": payload}, maxlen=STREAM_MAXLEN, approximate=True))

    def _publish_sns(self, payload: str) -> str:
        import boto3  # only on AWS

        if self._client is None:
            region = self.url.split(":")[3]
            self._client = boto3.client("sns", region_name=region)
        return str(self._client.publish(TopicArn=self.url, Message=payload)["MessageId"])

    def subscription(self) -> Queue:
        """This service's consumer group as a :class:`~stackwright.runtime.queue.Queue` (receive/ack/DLQ).

        Raises :class:`QueueError` when the service is not a subscriber of the topic (no ``<TOPIC>_GROUP``).
        """
        if self.group is None:
            raise QueueError(f"this service does not subscribe to topic {self.name} (list it in the topic's "
                             "subscribers)")
        if self._subscription is None:
            if self._sns:
                region = self.url.split(":")[3]
                self._subscription = queue_from_url(f"sqs://?region={region}", self.group,
                                                    max_receive_count=self.max_receive_count,
                                                    visibility_timeout=self.visibility_timeout)
            else:
                scheme = urlsplit(self.url).scheme
                if scheme not in ("redis", "rediss", "unix"):
                    raise QueueError(f"unsupported topic URL scheme {scheme!r}")
                from .queue.redis_streams import RedisStreamsQueue

                self._subscription = RedisStreamsQueue(
                    self.url, self.group, stream=self.name, group=self.group,
                    max_receive_count=self.max_receive_count, visibility_timeout=self.visibility_timeout)
        return self._subscription

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._subscription is not None:
            await self._subscription.close()


def event_json(body: dict[str, Any]) -> str:
    """Canonical JSON of an event (sorted keys, no spaces): what hashes and signatures are computed over."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
