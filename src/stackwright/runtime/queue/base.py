"""The queue contract shared by every backend, and the URL-based factory that picks one.

Delivery is at-least-once: a consumer that does not ack() within the visibility timeout gets
its message handed to another receive(), and after ``max_receive_count`` deliveries the message
is parked in a dead-letter queue (DLQ) until someone redrives it.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: The FIFO message group of sends that name none: one group keeps the whole queue in order.
DEFAULT_GROUP = "default"


class QueueError(Exception):
    """A queue operation failed in a way the caller should see (bad URL, bad body, missing queue)."""


@dataclass(frozen=True)
class Message:
    """One delivery of a message.

    The same message delivered twice yields two ``Message`` objects with different
    ``receive_count`` (and, on SQS, different ``receipt``); only the latest receipt is
    guaranteed to work with ``ack()``/``extend()``.
    """

    id: str  # backend message id
    body: dict[str, Any]  # JSON object
    receive_count: int  # 1 on first delivery
    receipt: str  # opaque handle used by ack()/extend()


class Queue(abc.ABC):
    """A durable, at-least-once work queue with a dead-letter queue.

    Implementations are safe to share between tasks of one event loop; use one instance per
    process (or per event loop) and ``close()`` it when done.
    """

    name: str
    max_receive_count: int  # deliveries before the message moves to the DLQ
    visibility_timeout: float  # seconds a received, un-acked message stays invisible

    @abc.abstractmethod
    async def send(self, body: dict[str, Any], *, group: str | None = None, dedup_id: str | None = None) -> str:
        """Enqueue one JSON-object body and return the backend message id.

        ``group`` and ``dedup_id`` matter on FIFO queues (SQS ``MessageGroupId`` /
        ``MessageDeduplicationId``): messages of one group are delivered in order, one batch of a group in
        flight at a time; pass a key that needs ordering (a poll, an account), since the default,
        :data:`DEFAULT_GROUP`, orders (and serialises) the whole queue. A second send with the same
        ``dedup_id`` within SQS's 5-minute window is dropped; by default every call gets its own id, so
        SQS-side retries of one call are deduplicated but two calls never are. Other backends accept and
        ignore both (a Redis stream is one ordered log).
        """

    @abc.abstractmethod
    async def send_batch(self, bodies: list[dict[str, Any]], *, group: str | None = None) -> list[str]:
        """Enqueue many bodies (all in ``group`` on a FIFO queue); return their ids in the same order."""

    @abc.abstractmethod
    async def receive(self, max_messages: int = 10, wait_seconds: float = 1.0) -> list[Message]:
        """Return up to ``max_messages`` deliveries, waiting up to ``wait_seconds`` for the first.

        Returns new messages and messages whose visibility timeout expired (redelivered with
        ``receive_count`` + 1). A message whose next delivery would exceed ``max_receive_count``
        is moved to the DLQ instead of being returned. An empty list means nothing was ready.
        """

    @abc.abstractmethod
    async def ack(self, message: Message) -> None:
        """Delete the message for good. Acking twice (or after a redelivery) is not an error."""

    async def ack_many(self, messages: list[Message]) -> None:
        """Ack a batch (same semantics as :meth:`ack` for each message), in as few round trips as the
        backend allows. Backends override this; the default acks one by one."""
        for message in messages:
            await self.ack(message)

    @abc.abstractmethod
    async def extend(self, message: Message) -> bool:
        """Restart the visibility timeout of a message still held by this consumer.

        Returns False when the message is no longer held (already acked, or its timeout expired
        and it was handed to someone else), in which case the work should be abandoned.
        """

    @abc.abstractmethod
    async def depth(self) -> int:
        """Messages waiting or in flight (approximate on SQS); DLQ messages are not counted."""

    @abc.abstractmethod
    async def dlq_depth(self) -> int:
        """Messages sitting in the dead-letter queue."""

    @abc.abstractmethod
    async def dlq_messages(self, limit: int = 100) -> list[Message]:
        """Peek at up to ``limit`` DLQ messages without removing them.

        ``receipt`` on these is informational only; they cannot be acked.
        """

    @abc.abstractmethod
    async def redrive(self, limit: int | None = None) -> int:
        """Move up to ``limit`` (default: all) DLQ messages back to the main queue.

        Returns how many were moved. Redriven messages get a new id and their receive count
        starts again from zero.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. The instance must not be used afterwards."""

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def encode_body(body: dict[str, Any]) -> str:
    """Serialise a body, rejecting anything that is not a JSON object.

    Checked on send rather than on receive so a bad producer fails loudly instead of
    poisoning consumers.
    """
    if not isinstance(body, dict):
        raise QueueError(f"message body must be a JSON object (dict), got {type(body).__name__}")
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"message body is not JSON-serialisable: {exc}") from exc


def decode_body(raw: str | bytes) -> dict[str, Any]:
    """Parse a stored body; a non-object payload (written by a foreign producer) is wrapped."""
    value = json.loads(raw)
    if isinstance(value, dict):
        return value
    # Keep foreign payloads deliverable (so they can be acked or dead-lettered) rather than
    # crashing every consumer that touches them.
    return {"_raw": value}


def queue_from_url(
    url: str,
    name: str,
    *,
    max_receive_count: int = 5,
    visibility_timeout: float = 30.0,
    producer: Any = None,
    fifo: bool = False,
) -> Queue:
    """Build the backend a URL names.

    * ``redis://``, ``rediss://``, ``unix://`` -> Redis Streams (stream ``sw:q:<name>``).
    * ``sqs://?region=us-east-1&endpoint_url=http://...`` -> SQS, queue ``<name>`` resolved
      with GetQueueUrl; the DLQ comes from the queue's RedrivePolicy (else ``<name>-dlq``).
    * ``https://sqs.<region>.amazonaws.com/<account>/<queue>`` -> SQS with that exact queue.

    No network I/O happens here; connections are opened on first use. ``producer``: a multiplexed Redis
    connection the Redis backend sends on (shared with the caller, who closes it); other backends ignore it.
    ``fifo``: the SQS queue is FIFO (``<QUEUE>_FIFO``; a name ending in ``.fifo`` implies it), so sends carry
    a message group and deduplication id; the Redis backend is ordered anyway.
    """
    if max_receive_count < 1:
        raise QueueError("max_receive_count must be >= 1")
    if visibility_timeout <= 0:
        raise QueueError("visibility_timeout must be > 0")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # Imported lazily so that using one backend does not require the other's client library.
    if scheme in ("redis", "rediss", "unix"):
        from stackwright.runtime.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue(url, name, max_receive_count=max_receive_count, visibility_timeout=visibility_timeout,
                                 producer=producer)
    if scheme == "sqs" or (scheme == "https" and parts.hostname and parts.hostname.startswith("sqs.")):
        from stackwright.runtime.queue.sqs import SqsQueue

        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(params) - {"region", "endpoint_url"}
        if unknown:
            raise QueueError(f"unknown SQS URL parameter(s): {', '.join(sorted(unknown))}")
        region = params.get("region")
        queue_url: str | None = None
        if scheme == "https":
            queue_url = f"https://{parts.netloc}{parts.path}"
            # sqs.<region>.amazonaws.com: the region is in the host, and a mismatched client
            # region makes every call fail with a signature error.
            host_bits = (parts.hostname or "").split(".")
            if region is None and len(host_bits) > 2:
                region = host_bits[1]
        return SqsQueue.from_settings(
            name,
            region=region,
            endpoint_url=params.get("endpoint_url"),
            queue_url=queue_url,
            max_receive_count=max_receive_count,
            visibility_timeout=visibility_timeout,
            fifo=fifo,
        )
    raise QueueError(f"unsupported queue URL scheme {parts.scheme!r} in {url!r}")
