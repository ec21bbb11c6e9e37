"""Queue backend on Amazon SQS (standard and FIFO queues), via boto3's sync client run in threads.

FIFO queues (``fifo=True``, or a name ending in ``.fifo``) refuse a send without ``MessageGroupId``; every
send here carries one (the caller's ``group``, else :data:`DEFAULT_GROUP`) and a ``MessageDeduplicationId``
(the caller's ``dedup_id``, else a fresh one per call). An explicit id takes precedence over the
ContentBasedDeduplication the rendered queues enable, so two different sends with equal bodies are
never merged, while boto3's retries of one call (same id) are. The DLQ of ``x.fifo`` is ``x-dlq.fifo``.

The dead-letter queue is SQS's own: the main queue's RedrivePolicy names it and SQS moves a
message there once it has been received ``maxReceiveCount`` times. In production the CDK stack
creates both queues; :func:`ensure_queues` does the same for local runs and tests (moto).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from stackwright.runtime.queue.base import DEFAULT_GROUP, Message, Queue, QueueError, decode_body, encode_body

log = logging.getLogger(__name__)

_SQS_BATCH = 10  # hard SQS limit for SendMessageBatch / ReceiveMessage / DeleteMessageBatch
_MAX_WAIT = 20  # hard SQS limit for WaitTimeSeconds
_MAX_VISIBILITY = 43_200  # hard SQS limit (12 h)
_RECEIVE_COUNT = "ApproximateReceiveCount"
_GROUP = "MessageGroupId"
_FIFO_SUFFIX = ".fifo"


def dlq_name(name: str) -> str:
    """The DLQ's name by convention: ``<name>-dlq``, before the ``.fifo`` suffix SQS requires of FIFO queues."""
    if name.endswith(_FIFO_SUFFIX):
        return name[: -len(_FIFO_SUFFIX)] + "-dlq" + _FIFO_SUFFIX
    return f"{name}-dlq"


def _error_code(exc: ClientError) -> str:
    # With the JSON protocol SQS may report either "ReceiptHandleIsInvalid" or the legacy
    # query-style "AWS.SimpleQueueService.ReceiptHandleIsInvalid"; compare the last segment.
    return str(exc.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]


_MISSING_QUEUE = {"NonExistentQueue", "QueueDoesNotExist"}
_STALE_RECEIPT = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle"}


def _whole_seconds(seconds: float, upper: int) -> int:
    """SQS only takes whole seconds; round up so a message is never visible early."""
    return max(0, min(upper, math.ceil(seconds)))


def _create_or_update(client: Any, name: str, attributes: dict[str, str]) -> str:
    try:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if _error_code(exc) not in {"QueueAlreadyExists", "QueueNameExists"}:
            raise
    # Exists with other attributes: converge it to what we want instead of failing.
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_queues(client: Any, name: str, max_receive_count: int, visibility_timeout: float) -> tuple[str, str]:
    """Create (or update) queue ``name`` and its DLQ (:func:`dlq_name`); return both URLs.

    The main queue gets a RedrivePolicy pointing at the DLQ with ``max_receive_count``, and
    ``visibility_timeout`` (rounded up to whole seconds) as its default. A name ending in ``.fifo`` makes
    both queues FIFO with content-based deduplication, as the rendered CDK app does. Synchronous: meant
    for local setup and tests, where the caller already holds a boto3 client.
    """
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if name.endswith(_FIFO_SUFFIX) else {}
    dlq_url = _create_or_update(client, dlq_name(name), {"MessageRetentionPeriod": str(14 * 24 * 3600), **fifo})
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = _create_or_update(
        client,
        name,
        {
            "VisibilityTimeout": str(_whole_seconds(visibility_timeout, _MAX_VISIBILITY)),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
            **fifo,
        },
    )
    return url, dlq_url


class SqsQueue(Queue):
    """SQS implementation of :class:`Queue`.

    ``visibility_timeout`` is applied per ReceiveMessage call (rounded up to whole seconds),
    so it holds even if the queue's default differs. Dead-lettering is done by SQS itself; as a
    safety net, a message that still arrives with a receive count above ``max_receive_count``
    (queue policy looser than ours) is moved to the DLQ by the client.
    """

    def __init__(
        self,
        name: str,
        *,
        client: Any,
        queue_url: str | None = None,
        dlq_url: str | None = None,
        max_receive_count: int = 5,
        visibility_timeout: float = 30.0,
        owns_client: bool = False,
        fifo: bool = False,
    ) -> None:
        self.name = name
        self.fifo = fifo or name.endswith(_FIFO_SUFFIX)
        self.max_receive_count = max_receive_count
        self.visibility_timeout = visibility_timeout
        self._client = client
        self._queue_url = queue_url
        self._dlq_url = dlq_url
        self._owns_client = owns_client
        self._visibility = _whole_seconds(visibility_timeout, _MAX_VISIBILITY)

    @classmethod
    def from_settings(
        cls,
        name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        queue_url: str | None = None,
        max_receive_count: int = 5,
        visibility_timeout: float = 30.0,
        fifo: bool = False,
    ) -> SqsQueue:
        """Build a queue with its own boto3 client (credentials from the usual AWS chain)."""
        client = boto3.client(
            "sqs",
            region_name=region,
            endpoint_url=endpoint_url,
            # Read timeout must outlast the longest long poll (20 s) or every idle receive
            # would end in a spurious timeout and retry.
            config=Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=30),
        )
        return cls(
            name,
            client=client,
            queue_url=queue_url,
            max_receive_count=max_receive_count,
            visibility_timeout=visibility_timeout,
            owns_client=True,
            fifo=fifo,
        )

    async def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        # boto3 is blocking; a thread keeps long polls from stalling the event loop.
        return await asyncio.to_thread(fn, **kwargs)

    # -- queue URL resolution ----------------------------------------------------------------

    async def _url(self) -> str:
        if self._queue_url is None:
            self._queue_url = await self._lookup(self.name, None)
        return self._queue_url

    async def _dlq(self) -> str:
        if self._dlq_url is None:
            attrs = await self._call(
                self._client.get_queue_attributes, QueueUrl=await self._url(), AttributeNames=["RedrivePolicy"]
            )
            policy = attrs.get("Attributes", {}).get("RedrivePolicy")
            if policy:
                # arn:aws:sqs:<region>:<account>:<queue>; the DLQ may be owned by this account
                # under any name, so trust the policy over the naming convention.
                arn = json.loads(policy)["deadLetterTargetArn"]
                _, _, _, _, account, dlq_name = arn.split(":", 5)
                self._dlq_url = await self._lookup(dlq_name, account)
            else:
                self._dlq_url = await self._lookup(dlq_name(self.name), None)
        return self._dlq_url

    async def _lookup(self, name: str, account: str | None) -> str:
        kwargs: dict[str, str] = {"QueueName": name}
        if account:
            kwargs["QueueOwnerAWSAccountId"] = account
        try:
            resp = await self._call(self._client.get_queue_url, **kwargs)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_QUEUE:
                raise QueueError(f"SQS queue {name!r} does not exist") from exc
            raise
        return resp["QueueUrl"]

    # -- producing -----------------------------------------------------------------------------

    def _ordering(self, group: str | None, dedup_id: str | None) -> dict[str, str]:
        """The FIFO parameters of one message (none on a standard queue, which would reject them)."""
        if not self.fifo:
            return {}
        return {"MessageGroupId": group or DEFAULT_GROUP, "MessageDeduplicationId": dedup_id or uuid.uuid4().hex}

    async def send(self, body: dict[str, Any], *, group: str | None = None, dedup_id: str | None = None) -> str:
        """SendMessage with the JSON body (plus group and deduplication id on a FIFO queue)."""
        resp = await self._call(self._client.send_message, QueueUrl=await self._url(), MessageBody=encode_body(body),
                                **self._ordering(group, dedup_id))
        return resp["MessageId"]

    async def send_batch(self, bodies: list[dict[str, Any]], *, group: str | None = None) -> list[str]:
        """SendMessageBatch in chunks of 10; raises QueueError if any entry is rejected."""
        return await self._send_raw(await self._url(), [encode_body(b) for b in bodies], [group] * len(bodies))

    async def _send_raw(self, url: str, payloads: list[str], groups: list[str | None]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(payloads), _SQS_BATCH):
            chunk = payloads[start : start + _SQS_BATCH]
            resp = await self._call(
                self._client.send_message_batch,
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": p, **self._ordering(groups[start + i], None)}
                         for i, p in enumerate(chunk)],
            )
            if resp.get("Failed"):
                # Earlier chunks are already enqueued; the caller has to treat the whole batch
                # as at-least-once anyway.
                reasons = "; ".join(f"{f['Id']}: {f.get('Code')} {f.get('Message', '')}" for f in resp["Failed"])
                raise QueueError(f"SQS rejected {len(resp['Failed'])} of {len(chunk)} messages: {reasons}")
            by_entry = {s["Id"]: s["MessageId"] for s in resp.get("Successful", [])}
            ids.extend(by_entry[str(i)] for i in range(len(chunk)))
        return ids

    # -- consuming ---------------------------------------------------------------------------

    async def receive(self, max_messages: int = 10, wait_seconds: float = 1.0) -> list[Message]:
        """One ReceiveMessage long poll; at most 10 messages (SQS limit) per call.

        ``wait_seconds`` is rounded up to whole seconds (0 means a short poll).
        """
        if max_messages < 1:
            return []
        url = await self._url()
        resp = await self._call(
            self._client.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=min(_SQS_BATCH, max_messages),
            WaitTimeSeconds=_whole_seconds(wait_seconds, _MAX_WAIT),
            VisibilityTimeout=self._visibility,
            MessageSystemAttributeNames=[_RECEIVE_COUNT, _GROUP],
        )
        out: list[Message] = []
        for raw in resp.get("Messages", []):
            count = int(raw.get("Attributes", {}).get(_RECEIVE_COUNT, "1"))
            if count > self.max_receive_count and await self._client_side_dead_letter(url, raw):
                continue
            out.append(self._message(raw, count))
        return out

    async def _client_side_dead_letter(self, url: str, raw: dict[str, Any]) -> bool:
        try:
            dlq = await self._dlq()
        except QueueError:
            log.warning("queue %s: message %s over max_receive_count but no DLQ", self.name, raw["MessageId"])
            return False
        await self._call(self._client.send_message, QueueUrl=dlq, MessageBody=raw["Body"],
                         **self._ordering(raw.get("Attributes", {}).get(_GROUP), None))
        await self._call(self._client.delete_message, QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"])
        return True

    @staticmethod
    def _message(raw: dict[str, Any], count: int) -> Message:
        return Message(
            id=raw["MessageId"],
            body=decode_body(raw["Body"]),
            receive_count=count,
            receipt=raw["ReceiptHandle"],
        )

    async def ack(self, message: Message) -> None:
        """DeleteMessage; a stale or already-used receipt is ignored (idempotent ack)."""
        try:
            await self._call(self._client.delete_message, QueueUrl=await self._url(), ReceiptHandle=message.receipt)
        except ClientError as exc:
            if _error_code(exc) not in _STALE_RECEIPT:
                raise
            # Nothing the caller could do: the message is gone, or will be redelivered anyway.
            log.debug("queue %s: ack of %s ignored: %s", self.name, message.id, exc)

    async def ack_many(self, messages: list[Message]) -> None:
        """DeleteMessageBatch, 10 receipts per call; stale receipts are ignored as in :meth:`ack`."""
        url = await self._url()
        receipts = list(dict.fromkeys(m.receipt for m in messages))
        for start in range(0, len(receipts), _SQS_BATCH):
            chunk = receipts[start : start + _SQS_BATCH]
            resp = await self._call(
                self._client.delete_message_batch,
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)],
            )
            failed = [f for f in resp.get("Failed", [])
                      if str(f.get("Code", "")).rsplit(".", 1)[-1] not in _STALE_RECEIPT]
            if failed:
                reasons = "; ".join(f"{f['Id']}: {f.get('Code')} {f.get('Message', '')}" for f in failed)
                raise QueueError(f"SQS could not delete {len(failed)} of {len(chunk)} messages: {reasons}")
            for f in resp.get("Failed", []):
                log.debug("queue %s: ack of receipt %s ignored: %s", self.name, f["Id"], f.get("Code"))

    async def extend(self, message: Message) -> bool:
        """ChangeMessageVisibility to the full visibility timeout, counted from now."""
        try:
            await self._call(
                self._client.change_message_visibility,
                QueueUrl=await self._url(),
                ReceiptHandle=message.receipt,
                VisibilityTimeout=self._visibility,
            )
        except ClientError as exc:
            if _error_code(exc) in _STALE_RECEIPT:
                return False
            raise
        return True

    # -- inspection and DLQ ------------------------------------------------------------------

    async def _count(self, url: str) -> int:
        resp = await self._call(
            self._client.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        return sum(int(v) for v in resp.get("Attributes", {}).values())

    async def depth(self) -> int:
        """Approximate waiting + in-flight + delayed count of the main queue."""
        return await self._count(await self._url())

    async def dlq_depth(self) -> int:
        """Approximate message count of the DLQ."""
        return await self._count(await self._dlq())

    async def _take(self, url: str, want: int) -> list[dict[str, Any]]:
        """One ReceiveMessage that hides what it returns for a minute (for DLQ handling)."""
        resp = await self._call(
            self._client.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=min(_SQS_BATCH, want),
            # A long poll (not 0) asks every SQS server, so an empty reply means empty, not
            # "the sampled servers had nothing".
            WaitTimeSeconds=1,
            # Long enough to finish the batch, so nothing we took is handed to us again.
            VisibilityTimeout=60,
            MessageSystemAttributeNames=[_RECEIVE_COUNT, _GROUP],
        )
        return list(resp.get("Messages", []))

    async def _drain(self, url: str, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` messages from ``url``, stopping when it comes back empty."""
        taken: dict[str, dict[str, Any]] = {}
        while len(taken) < limit:
            fresh = [m for m in await self._take(url, limit - len(taken)) if m["MessageId"] not in taken]
            if not fresh:
                break
            taken.update((m["MessageId"], m) for m in fresh)
        return list(taken.values())

    async def dlq_messages(self, limit: int = 100) -> list[Message]:
        """Peek at DLQ messages: receive them, then make them visible again at once.

        SQS has no real peek, so each call counts as one receive of those DLQ messages; the
        reported ``receive_count`` excludes the peek itself.
        """
        if limit < 1:
            return []
        dlq = await self._dlq()
        raws = await self._drain(dlq, limit)
        for start in range(0, len(raws), _SQS_BATCH):
            chunk = raws[start : start + _SQS_BATCH]
            await self._call(
                self._client.change_message_visibility_batch,
                QueueUrl=dlq,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
        return [self._message(m, max(0, int(m.get("Attributes", {}).get(_RECEIVE_COUNT, "1")) - 1)) for m in raws]

    async def redrive(self, limit: int | None = None) -> int:
        """Receive from the DLQ, send each body to the main queue, then delete it from the DLQ.

        Send happens before delete, so a crash in between duplicates rather than loses.
        """
        dlq = await self._dlq()
        url = await self._url()
        moved = 0
        while limit is None or moved < limit:
            raws = await self._take(dlq, _SQS_BATCH if limit is None else limit - moved)
            if not raws:
                break
            await self._send_raw(url, [m["Body"] for m in raws], [m.get("Attributes", {}).get(_GROUP) for m in raws])
            resp = await self._call(
                self._client.delete_message_batch,
                QueueUrl=dlq,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(raws)],
            )
            if resp.get("Failed"):
                log.warning("queue %s: %d redriven messages not removed from DLQ", self.name, len(resp["Failed"]))
            moved += len(raws)
        return moved

    async def close(self) -> None:
        """Close the boto3 client if this queue created it."""
        if self._owns_client:
            await asyncio.to_thread(self._client.close)
