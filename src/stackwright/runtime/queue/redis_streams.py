"""Queue backend on Redis Streams with one consumer group.

Layout: stream ``sw:q:<name>`` holds waiting and in-flight messages (acked entries are XDEL'd,
so XLEN is the depth), consumer group ``workers`` tracks who holds what (the PEL), and stream
``sw:q:<name>:dlq`` holds dead-lettered bodies. Each entry has one field ``b`` with the JSON
body; DLQ entries also carry ``receive_count`` and ``source_id``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from stackwright.runtime.queue.base import Message, Queue, QueueError, decode_body, encode_body
from stackwright.runtime.redis_client import block_ms, redis_py_options
from stackwright.runtime.redis_mux import COMMAND_TIMEOUT_S, MultiplexedRedis, supports

log = logging.getLogger(__name__)

T = TypeVar("T")

GROUP = "workers"
BODY_FIELD = "b"
_ACK_CHUNK = 1000  # ids per XACK/XDEL command in ack_many (keeps single commands small)
POOL_SIZE = 100  # connections per queue instance (redis-py's default cap)
POOL_WAIT_S = 5.0  # how long a command waits for a free pooled connection before failing

# Moving to the DLQ is conditional on XACK succeeding: if the slow original holder acked the
# message between our XAUTOCLAIM and now, it was processed and must not be dead-lettered.
# A script (atomic, like MULTI) is used instead of MULTI because MULTI cannot branch.
_DEAD_LETTER_LUA = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XADD', KEYS[2], '*', 'b', ARGV[3], 'receive_count', ARGV[4], 'source_id', ARGV[2])
end
if ARGV[5] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return acked
"""

# A claim and a message in one atomic step: the message is appended only when the claim key was free, so
# a refused claim writes nothing. One round trip where SET NX, then XADD, took two (see send_claimed).
_CLAIM_SEND_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', 'b', ARGV[3])
end
return false
"""

# Deleting first and re-adding only if the delete hit makes concurrent redrives of the same
# DLQ entry produce one copy, not two.
_REDRIVE_LUA = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', 'b', ARGV[2])
end
return false
"""

# Renew the lease only if this consumer still holds the message; otherwise it has been
# redelivered to someone else and stealing it back would hand the same work out twice.
# XCLAIM ... JUSTID resets the idle time without bumping the delivery counter.
_EXTEND_LUA = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #p == 0 then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""


def _driver_kwargs() -> dict[str, Any]:
    # redis-py >= 7 looks its own version up in the installed package metadata (a scan of site-packages)
    # for every new connection unless it is handed a DriverInfo; under a burst that ran in the event
    # loop once per new pooled connection and stalled every request on it (profiled). Resolve it once.
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # older redis-py: no per-connection lookup to avoid
        return {}
    return {"driver_info": DriverInfo()}


_DRIVER_KWARGS = _driver_kwargs()


def _consumer_name() -> str:
    # Unique per instance so a restarted process never inherits (and silently re-reads) the
    # in-flight messages of its predecessor; those come back via XAUTOCLAIM instead.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _stream_entries(response: Any) -> list[tuple[str, dict[str, str]]]:
    """Flatten an XREADGROUP reply for a single stream.

    RESP2 gives ``[[stream, entries]]``; redis-py's RESP3 parser gives ``{stream: [entries]}``.
    """
    if not response:
        return []
    if isinstance(response, dict):
        return [tuple(e) for wrapped in response.values() for entries in wrapped for e in entries]
    return [tuple(e) for _stream, entries in response for e in entries]


class RedisStreamsQueue(Queue):
    """Redis Streams implementation of :class:`Queue`.

    ``command_timeout_s``: a command fails with TimeoutError when Redis has not answered within it (a stopped
    server), and a blocking receive blocks for less (:func:`~stackwright.runtime.redis_client.block_ms`).

    Survives a Redis restart: connection errors are retried by redis-py with backoff, and a
    consumer group that vanished (restart without persistence) is recreated on the first
    NOGROUP error. Messages are at-least-once; a send retried across a dropped connection may
    be enqueued twice.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        max_receive_count: int = 5,
        visibility_timeout: float = 30.0,
        client: aioredis.Redis | None = None,
        producer: MultiplexedRedis | None = None,
        stream: str | None = None,
        group: str | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.command_timeout_s = command_timeout_s
        self.max_receive_count = max_receive_count
        self.visibility_timeout = visibility_timeout
        # A topic subscription (``stream`` and ``group`` given) reads a stream other groups read too: an ack
        # must not delete the entry (XDEL) from under them, and its DLQ is its own.
        self.shared = stream is not None
        self.stream = stream or f"sw:q:{name}"
        self.group = group or GROUP
        self.dlq_stream = f"{self.stream}:{self.group}:dlq" if self.shared else f"sw:q:{name}:dlq"
        self.consumer = _consumer_name()
        self._redis = client or aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            url,
            # A burst (or a stall of the server, e.g. a slow fsync) can need more connections than the
            # pool holds; waiting up to POOL_WAIT_S for one rides it out, where redis-py's default pool
            # fails at once with MaxConnectionsError (it did: 503s under open-loop load).
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            decode_responses=True,
            # A restart takes a second or two; ~6 s of backoff rides it out without hanging
            # callers forever when Redis is really gone. A Redis that stops answering fails a command
            # after COMMAND_TIMEOUT_S, so a blocking read blocks for less (block_ms).
            **redis_py_options(command_timeout_s, retries=10, backoff_cap_s=1.0),
            health_check_interval=15,
            **_DRIVER_KWARGS,
        ))
        # Producers send on one multiplexed connection: an XADD there costs ~7 µs of CPU against ~100 µs
        # through redis-py's pool, and sending is what every accepted request does. Opened on first send;
        # a producer handed in is shared (Service: one per Redis) and closed by whoever made it.
        self._owns_producer = producer is None and supports(url)
        self._producer = producer or (MultiplexedRedis(url, command_timeout=command_timeout_s)
                                      if supports(url) else None)
        self._claim_send = self._producer.script(_CLAIM_SEND_LUA) if self._producer is not None else None
        self._group_ready = False
        # XAUTOCLAIM scans a bounded slice of the PEL per call; carrying the cursor over means
        # a long run of still-fresh in-flight entries at the head cannot hide expired ones.
        self._claim_cursor = "0-0"
        self._dead_letter = self._redis.register_script(_DEAD_LETTER_LUA)
        self._redrive_one = self._redis.register_script(_REDRIVE_LUA)
        self._extend = self._redis.register_script(_EXTEND_LUA)

    # -- group management ------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # id "0", not "$": acked entries are deleted, so everything still in the stream
            # is unprocessed work — including messages sent before the group existed or sent
            # after a restart wiped the group.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _with_group(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``, recreating the consumer group once if Redis says it is gone."""
        await self._ensure_group()
        try:
            return await op()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("queue %s: consumer group vanished (Redis restarted?); recreating", self.name)
        self._group_ready = False
        self._claim_cursor = "0-0"
        await self._ensure_group()
        return await op()

    # -- producing -------------------------------------------------------------------------

    async def send(self, body: dict[str, Any], *, group: str | None = None, dedup_id: str | None = None) -> str:
        """Append one message to the stream (``group``/``dedup_id`` are for FIFO SQS: a stream is ordered)."""
        payload = encode_body(body)
        await self._ensure_group()
        return await (self._producer or self._redis).xadd(self.stream, {BODY_FIELD: payload})

    async def send_claimed(self, key: str, value: str, ttl_s: int, body: dict[str, Any]) -> str | None:
        """``SET key value NX EX ttl_s`` and, only if the key was free, append ``body``: both or neither, in
        one atomic script and one round trip. Returns the message id, or None when ``key`` was already held
        (then nothing was written). ``key`` lives on the queue's own Redis: for a claim that must share the
        queue's fate (one vote per viewer and poll, acknowledged once queued), when the caller's cache is that
        Redis. Needs the multiplexed producer (``redis://``/``rediss://``); raises QueueError otherwise.

        Never re-sent on a lost connection: the caller cannot tell whether it ran, as with any send.
        """
        if self._claim_send is None:
            raise QueueError("send_claimed needs a redis:// or rediss:// queue URL")
        payload = encode_body(body)
        await self._ensure_group()
        return await self._claim_send(keys=[key, self.stream], args=[value, ttl_s, payload])

    async def send_batch(self, bodies: list[dict[str, Any]], *, group: str | None = None) -> list[str]:
        """Append many messages in one round trip (a pipeline, not a transaction)."""
        payloads = [encode_body(b) for b in bodies]
        if not payloads:
            return []
        await self._ensure_group()
        async with self._redis.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.xadd(self.stream, {BODY_FIELD: payload})
            return list(await pipe.execute())

    # -- consuming -------------------------------------------------------------------------

    async def receive(self, max_messages: int = 10, wait_seconds: float = 1.0) -> list[Message]:
        """Reclaim expired in-flight messages first, then read new ones (blocking if none)."""
        if max_messages < 1:
            return []
        out = await self._with_group(lambda: self._reclaim(max_messages))
        remaining = max_messages - len(out)
        if remaining > 0:
            # Only block when we have nothing to return yet; BLOCK 0 would mean "forever". The block stays
            # below the socket timeout, or a quiet stream would read as a Redis that stopped answering.
            block = block_ms(wait_seconds, self.command_timeout_s) if not out and wait_seconds > 0 else None
            response = await self._with_group(
                lambda: self._redis.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=remaining, block=block or None
                )
            )
            for entry_id, fields in _stream_entries(response):
                out.append(self._message(entry_id, fields, receive_count=1))
        return out

    async def _reclaim(self, max_messages: int) -> list[Message]:
        min_idle_ms = max(1, int(self.visibility_timeout * 1000))
        reply = await self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id=self._claim_cursor,
            count=max_messages,
        )
        self._claim_cursor = reply[0]
        # (None, None) entries are PEL records whose stream entry was deleted without an XACK
        # (Redis 6.x keeps them); this backend always XACKs and XDELs together, so there is
        # nothing to deliver and nothing we can name to clean up.
        claimed = [(eid, fields) for eid, fields in reply[1] if eid is not None]
        if not claimed:
            return []
        # XAUTOCLAIM already bumped the delivery counter; XPENDING is where it can be read.
        async with self._redis.pipeline(transaction=False) as pipe:
            for eid, _ in claimed:
                pipe.xpending_range(self.stream, self.group, min=eid, max=eid, count=1)
            pending = await pipe.execute()
        out: list[Message] = []
        for (eid, fields), info in zip(claimed, pending, strict=True):
            if not info:
                continue  # acked by its previous holder between the two calls
            delivered = int(info[0]["times_delivered"])
            if delivered > self.max_receive_count:
                await self._dead_letter(
                    keys=[self.stream, self.dlq_stream],
                    args=[self.group, eid, fields.get(BODY_FIELD, "null"), delivered - 1, "0" if self.shared else "1"],
                )
                continue
            out.append(self._message(eid, fields, receive_count=delivered))
        return out

    def _message(self, entry_id: str, fields: dict[str, str], *, receive_count: int) -> Message:
        # The consumer name travels in the receipt so extend() can check ownership even when
        # called on a different Queue instance than the one that received the message.
        return Message(
            id=entry_id,
            body=decode_body(fields.get(BODY_FIELD, "null")),
            receive_count=receive_count,
            receipt=f"{entry_id}/{self.consumer}",
        )

    async def ack(self, message: Message) -> None:
        """XACK + XDEL in one transaction; both are no-ops for an already-acked id."""
        entry_id = message.receipt.split("/", 1)[0]

        async def op() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, entry_id)
                if not self.shared:
                    pipe.xdel(self.stream, entry_id)
                await pipe.execute()

        await self._with_group(op)

    async def ack_many(self, messages: list[Message]) -> None:
        """One XACK and one XDEL naming every id, in one transaction: one round trip for the batch."""
        ids = list(dict.fromkeys(m.receipt.split("/", 1)[0] for m in messages))
        if not ids:
            return

        async def op() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                for start in range(0, len(ids), _ACK_CHUNK):
                    chunk = ids[start : start + _ACK_CHUNK]
                    pipe.xack(self.stream, self.group, *chunk)
                    if not self.shared:
                        pipe.xdel(self.stream, *chunk)
                await pipe.execute()

        await self._with_group(op)

    async def extend(self, message: Message) -> bool:
        """Reset the message's idle time if its receiving consumer still holds it."""
        entry_id, _, consumer = message.receipt.partition("/")
        if not consumer:
            raise QueueError("receipt was not issued by the Redis Streams backend")
        held = await self._with_group(lambda: self._extend(keys=[self.stream], args=[self.group, entry_id, consumer]))
        return bool(held)

    # -- inspection and DLQ ----------------------------------------------------------------

    async def depth(self) -> int:
        """XLEN of the stream: waiting plus in-flight, since acked entries are deleted. A subscription's
        stream keeps what other groups still need, so there it is the group's lag plus its pending entries."""
        if not self.shared:
            return int(await self._redis.xlen(self.stream))
        for info in await self._redis.xinfo_groups(self.stream):
            if info.get("name") == self.group:
                lag = info.get("lag")
                if lag is None:  # Redis < 7 reports no lag: count the entries after the group's last delivery
                    last = info.get("last-delivered-id") or "0-0"
                    lag = len(await self._redis.xrange(self.stream, min=f"({last}", max="+"))
                return int(lag) + int(info.get("pending") or 0)
        return 0

    async def dlq_depth(self) -> int:
        """XLEN of the DLQ stream."""
        return int(await self._redis.xlen(self.dlq_stream))

    async def dlq_messages(self, limit: int = 100) -> list[Message]:
        """Oldest ``limit`` DLQ entries, left in place."""
        if limit < 1:
            return []
        entries = await self._redis.xrange(self.dlq_stream, "-", "+", count=limit)
        return [
            Message(
                id=eid,
                body=decode_body(fields.get(BODY_FIELD, "null")),
                receive_count=int(fields.get("receive_count", 0)),
                receipt=eid,
            )
            for eid, fields in entries
        ]

    async def redrive(self, limit: int | None = None) -> int:
        """Move DLQ entries (oldest first) back onto the main stream as fresh messages.

        Raises QueueError for a topic subscription: its stream is the topic's, so an entry added back would
        reach every subscriber again, not only this one (SQS redrives to the subscriber's own queue)."""
        if self.shared:
            raise QueueError(f"the dead letters of topic subscription {self.group} cannot be redriven locally: "
                             "they would be delivered to every subscriber of the topic again")
        moved = 0
        await self._ensure_group()
        # Start after the last seen id so entries another redriver keeps failing on cannot
        # make this loop spin.
        start = "-"
        while limit is None or moved < limit:
            batch = 100 if limit is None else min(100, limit - moved)
            entries = await self._redis.xrange(self.dlq_stream, start, "+", count=batch)
            if not entries:
                break
            for eid, fields in entries:
                new_id = await self._redrive_one(
                    keys=[self.dlq_stream, self.stream], args=[eid, fields.get(BODY_FIELD, "null")]
                )
                if new_id:
                    moved += 1
            start = "(" + entries[-1][0]
        return moved

    async def close(self) -> None:
        """Forget this consumer in the group (if it holds nothing) and close the connections."""
        try:
            # Only a consumer with an empty PEL is removed: deleting one that still holds
            # messages would drop them from the PEL and they would never be redelivered.
            info = await self._redis.xpending_range(
                self.stream, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not info:
                await self._redis.xgroup_delconsumer(self.stream, self.group, self.consumer)
        except Exception as exc:  # best effort: a stale consumer entry is harmless
            log.debug("queue %s: consumer cleanup skipped: %s", self.name, exc)
        if self._owns_producer and self._producer is not None:
            await self._producer.aclose()
        await self._redis.aclose()
