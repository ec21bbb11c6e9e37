"""A small, fast asyncio Redis client: one pipelined TCP connection shared by every coroutine.

redis-py's asyncio client spends 70-180 µs of CPU per command (pool acquire, Retry wrapper, per-call timeouts).
Here each command is one ``hiredis.pack_command`` plus one future: commands issued in the same event-loop tick
are joined into one ``transport.write``, and replies (parsed by ``hiredis.Reader``) are matched to callers in
FIFO order, which is how Redis answers a pipelined connection.

Because the connection is shared, commands that block it or change its state must never be sent on it:
blocking reads (BLPOP, XREAD ... BLOCK, ...), pub/sub, MULTI/EXEC/WATCH and SELECT raise ``ValueError``.
Use a separate redis-py client for those.

Failure semantics (mapped to 503 by ``problems.dependency_unavailable``):
- connection loss fails every command in flight with the builtin ``ConnectionError``, except commands sent with
  ``idempotent=True``, which are re-sent once the connection is back (within ``reconnect_for`` seconds);
- commands issued while disconnected wait up to ``reconnect_for`` seconds for the reconnect;
- a reply that takes longer than ``command_timeout`` raises the builtin ``TimeoutError`` and the connection is
  dropped (after a lost reply the FIFO can no longer be trusted) and reopened.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from .peer_probe import PeerProbe

__all__ = ["MultiplexedRedis", "NoScriptError", "ResponseError", "Script", "from_url", "supports"]

Value = str | bytes | int | float

# Commands that would stall every other coroutine (blocking) or change state that all of them share.
_FORBIDDEN = frozenset({
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC",
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "AUTH", "HELLO", "RESET", "QUIT",
})


class ResponseError(Exception):
    """An error reply from Redis; the message is Redis's own (e.g. ``"WRONGTYPE Operation against ..."``)."""


class NoScriptError(ResponseError):
    """EVALSHA named a script that the server does not have cached."""


class _Connection(asyncio.Protocol):
    """One TCP connection: a write buffer flushed once per loop tick and a FIFO of commands awaiting replies.

    A pending entry is ``[future, payload, retry_until, deadline]``; ``retry_until`` is None for commands that
    must not be re-sent, else the loop time until which a lost connection may re-send it.
    """

    def __init__(self, owner: MultiplexedRedis) -> None:
        self.owner = owner
        self.loop = owner._loop
        self.reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8" if owner.decode_responses else None)
        self.pending: deque[list[Any]] = deque()
        self.buffer: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._probe: PeerProbe | None = None

    def send(self, fut: asyncio.Future[Any], payload: bytes, retry_until: float | None) -> None:
        deadline = self.loop.time() + self.owner.command_timeout
        self.pending.append([fut, payload, retry_until, deadline])
        self.buffer.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._check_timeout)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.buffer and not self.lost and self.transport is not None:
            self.transport.write(b"".join(self.buffer))
        self.buffer.clear()

    def _check_timeout(self) -> None:
        # One timer per connection, not per command: the oldest command is at the head of the FIFO, so only
        # its deadline matters. Re-armed for the new head while replies keep arriving.
        self._timer = None
        if self.lost or not self.pending:
            return
        now = self.loop.time()
        if self.pending[0][3] > now:
            self._timer = self.loop.call_at(self.pending[0][3], self._check_timeout)
            return
        while self.pending and self.pending[0][3] <= now:
            fut = self.pending.popleft()[0]
            if not fut.done():
                fut.set_exception(TimeoutError(f"no reply from redis within {self.owner.command_timeout}s"))
        self.abort()  # the rest is handled as a lost connection (connection_lost)

    def abort(self) -> None:
        # Fail the pending commands now rather than when asyncio reports the close on a later tick, so that no
        # command can be queued on a connection that is already going away.
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._probe = PeerProbe.of(transport)

    def peer_closed(self) -> bool:
        """True when Redis has closed the connection and the loop has not read the close yet."""
        return self._probe is not None and self._probe.peer_closed()

    def data_received(self, data: bytes) -> None:
        reader, pending = self.reader, self.pending
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except UnicodeDecodeError as exc:  # like redis-py: that command fails; hiredis has consumed its reply
                reply = exc
            except hiredis.ProtocolError:  # garbage: the stream is unusable
                self.abort()
                return
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the FIFO is out of step
                self.abort()
                return
            fut = pending.popleft()[0]
            if fut.done():  # the caller was cancelled; its reply still had to be consumed
                continue
            if isinstance(reply, Exception):
                if type(reply) is ResponseError and str(reply).startswith("NOSCRIPT"):
                    reply = NoScriptError(str(reply))
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
        if self._probe is not None:
            self._probe.close()
        self.owner._lost(self, exc)


class Script:
    """A Lua script run with EVALSHA, falling back to EVAL when the server's script cache lacks it."""

    def __init__(self, client: MultiplexedRedis, body: str) -> None:
        self.client = client
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Value] = (), args: Sequence[Value] = ()) -> Any:
        """Run the script with ``keys`` (KEYS) and ``args`` (ARGV); returns its reply."""
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # after a restart or SCRIPT FLUSH; EVAL also re-caches it
            return await self.client.eval(self.body, len(keys), *keys, *args)


#: Seconds a command to Redis waits for its reply before it fails with TimeoutError (the service answers
#: 503): here, and the socket timeout of the runtime's redis-py pools (:mod:`.redis_client`). A Redis
#: command takes well under a millisecond; seconds mean the server is stalled or gone.
COMMAND_TIMEOUT_S = 5.0
#: Seconds to open a connection to Redis (TCP, plus TLS for rediss://).
CONNECT_TIMEOUT_S = 2.0


class MultiplexedRedis:
    """A Redis client multiplexing every coroutine's commands over one pipelined connection."""

    def __init__(self, url: str, *, decode_responses: bool = True, connect_timeout: float = CONNECT_TIMEOUT_S,
                 command_timeout: float = COMMAND_TIMEOUT_S, reconnect_for: float = 3.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if not supports(url):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} (redis:// or rediss://)")
        # rediss:// is Redis over TLS (ElastiCache with in-transit encryption: what the rendered secrets hold).
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "rediss" else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.db = int(parts.path.strip("/") or 0)
        self._auth: tuple[str, ...] = ()
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            self._auth = (user, unquote(parts.password)) if user else (unquote(parts.password),)
        self.decode_responses = decode_responses
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_for = reconnect_for
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound on first use
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection | BaseException] | None = None
        self._resend: list[list[Any]] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> MultiplexedRedis:
        """Same as the constructor; mirrors ``redis.asyncio.Redis.from_url``."""
        return cls(url, **kw)

    # -- connection management -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection now instead of on the first command."""
        await self._connected()

    async def aclose(self) -> None:
        """Close the connection; pending and later commands raise ``ConnectionError``."""
        self._closed = True
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
        resend, self._resend = self._resend, []
        for entry in resend:  # normally failed by the cancelled task, unless it was cancelled before it started
            if not entry[0].done():
                entry[0].set_exception(ConnectionError("redis client is closed"))

    async def _connected(self) -> _Connection:
        if self._closed:
            raise ConnectionError("redis client is closed")
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        task = self._connecting
        if task is None:  # only one coroutine reconnects; the others await its task
            task = self._connecting = self._loop.create_task(self._reconnect(self._loop.time() + self.reconnect_for))
        try:
            result = await asyncio.shield(task)  # a caller's cancellation must not cancel everyone's reconnect
        except asyncio.CancelledError:
            if task.cancelled() and self._closed:
                raise ConnectionError("redis client is closed") from None
            raise
        if isinstance(result, BaseException):
            raise ConnectionError(*result.args)  # a fresh instance per caller: shared ones accumulate tracebacks
        return result

    async def _reconnect(self, give_up_at: float) -> _Connection | BaseException:
        # Returns (not raises) the failure so that a task nobody awaits never logs "exception never retrieved".
        delay, error = 0.05, None
        try:
            while not self._closed:
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        conn = await self._open()
                    self._conn = conn
                    for entry in self._resend:
                        if not entry[0].done():
                            conn.send(entry[0], entry[1], entry[2])
                    self._resend.clear()
                    return conn
                except (OSError, TimeoutError, ResponseError) as exc:  # refused, reset, LOADING, ...
                    error = exc
                remaining = give_up_at - self._loop.time()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.5)
            failure = f"redis at {self.host}:{self.port} unavailable: {error!r}"
        except asyncio.CancelledError:  # aclose()
            failure = "redis client is closed"
        finally:
            self._connecting = None
        resend, self._resend = self._resend, []
        for entry in resend:
            if not entry[0].done():
                entry[0].set_exception(ConnectionError(failure))
        return ConnectionError(failure)

    async def _open(self) -> _Connection:
        _, conn = await self._loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self._ssl,
                                                     server_hostname=self.host if self._ssl else None)
        try:
            # Pipelined before any queued command. PING last: a server still loading its AOF answers
            # -LOADING, which we treat as "not up yet" and retry.
            handshake = ([("AUTH", *self._auth)] if self._auth else []) + ([("SELECT", self.db)] if self.db else [])
            futs = []
            for cmd in [*handshake, ("PING",)]:
                futs.append(self._loop.create_future())
                conn.send(futs[-1], hiredis.pack_command(cmd), None)
            for result in await asyncio.gather(*futs, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result
        except BaseException:
            conn.abort()
            raise
        return conn

    def _lost(self, conn: _Connection, exc: Exception | None) -> None:
        if self._conn is conn:
            self._conn = None
        now = self._loop.time()
        error = f"lost connection to redis at {self.host}:{self.port}: {exc!r}"
        for entry in conn.pending:
            fut, retry_until = entry[0], entry[2]
            if fut.done():
                continue
            if retry_until is not None and not self._closed and now < retry_until:
                entry[2] = min(retry_until, now + self.reconnect_for)  # bound by the first loss, not the latest
                self._resend.append(entry)
            else:
                fut.set_exception(ConnectionError(error))
        conn.pending.clear()
        if self._resend and self._connecting is None and not self._closed:
            self._connecting = self._loop.create_task(self._reconnect(now + self.reconnect_for))

    # -- commands --------------------------------------------------------------------------------------------

    async def execute(self, *args: Value, idempotent: bool = False) -> Any:
        """Send one command and return its reply; ``idempotent=True`` lets it be re-sent after a reconnect.

        Raises ``ResponseError`` for an error reply, ``ConnectionError``/``TimeoutError`` when Redis is
        unreachable or silent, and ``ValueError`` for commands that would block or alter the shared connection.
        """
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        name = name.upper()
        if name in _FORBIDDEN or (name in ("XREAD", "XREADGROUP")
                                  and any(isinstance(a, str | bytes) and a.upper() in ("BLOCK", b"BLOCK")
                                          for a in args)):
            raise ValueError(f"{name} blocks or changes the shared connection; use a dedicated client")
        payload = hiredis.pack_command(args)
        conn = self._conn
        if conn is None or conn.lost:
            conn = await self._connected()
        elif not idempotent and not conn.pending and conn.peer_closed():
            # Redis closed this socket while we were quiet (a restart) and the loop has not read the close yet:
            # reconnect first rather than send a command that must not be re-sent into a dead connection.
            conn.abort()
            conn = await self._connected()
        fut = self._loop.create_future()
        conn.send(fut, payload, math.inf if idempotent else None)
        return await fut

    async def ping(self) -> bool:
        """True when Redis answers PONG."""
        return await self.execute("PING", idempotent=True) in ("PONG", b"PONG")

    async def get(self, key: Value) -> Any:
        """The value at ``key``, or None."""
        return await self.execute("GET", key, idempotent=True)

    async def set(self, key: Value, value: Value, *, ex: int | None = None, px: int | None = None,
                  nx: bool = False, xx: bool = False) -> bool | None:
        """SET; True when stored, None when NX/XX prevented it (redis-py's convention)."""
        args: list[Value] = ["SET", key, value]
        if ex is not None:
            args += ["EX", ex]
        if px is not None:
            args += ["PX", px]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        return True if await self.execute(*args) is not None else None

    async def delete(self, *keys: Value) -> int:
        """Number of keys removed."""
        return await self.execute("DEL", *keys)

    async def exists(self, *keys: Value) -> int:
        """How many of ``keys`` exist."""
        return await self.execute("EXISTS", *keys, idempotent=True)

    async def expire(self, key: Value, seconds: int) -> bool:
        """True when the timeout was set (the key exists)."""
        return bool(await self.execute("EXPIRE", key, seconds))

    async def incr(self, key: Value, amount: int = 1) -> int:
        """The value after incrementing by ``amount`` (redis-py's signature)."""
        return await self.execute("INCR", key) if amount == 1 else await self.execute("INCRBY", key, amount)

    async def hgetall(self, key: Value) -> dict[Any, Any]:
        """The hash at ``key`` as a dict ({} when missing)."""
        flat = await self.execute("HGETALL", key, idempotent=True)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def hincrby(self, key: Value, field: Value, amount: int = 1) -> int:
        """The field's value after the increment."""
        return await self.execute("HINCRBY", key, field, amount)

    async def sadd(self, key: Value, *members: Value) -> int:
        """Number of members that were not already in the set."""
        return await self.execute("SADD", key, *members)

    async def scard(self, key: Value) -> int:
        """Number of members of the set."""
        return await self.execute("SCARD", key, idempotent=True)

    async def xadd(self, stream: Value, fields: dict[Value, Value], *, id: Value = "*", maxlen: int | None = None,
                   approximate: bool = True) -> Any:
        """Append an entry to a stream; returns its id."""
        args: list[Value] = ["XADD", stream]
        if maxlen is not None:
            args += ["MAXLEN", "~", maxlen] if approximate else ["MAXLEN", maxlen]
        args.append(id)
        for field, value in fields.items():
            args += [field, value]
        return await self.execute(*args)

    async def xlen(self, key: Value) -> int:
        """Number of entries in the stream."""
        return await self.execute("XLEN", key, idempotent=True)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Value) -> Any:
        """EVAL a Lua script."""
        return await self.execute("EVAL", script, numkeys, *keys_and_args)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Value) -> Any:
        """EVALSHA a cached Lua script; raises ``NoScriptError`` when the server lacks it."""
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    def script(self, body: str) -> Script:
        """A callable ``Script``: ``await script(keys=[...], args=[...])``."""
        return Script(self, body)


def supports(url: str) -> bool:
    """True for the URLs this client speaks (``redis://``, ``rediss://``); others (``unix://``) need redis-py."""
    return urlsplit(url).scheme in ("redis", "rediss")


def from_url(url: str, **kw: Any) -> MultiplexedRedis:
    """A ``MultiplexedRedis`` for ``url`` (``redis://[[user]:password@]host[:port][/db]``)."""
    return MultiplexedRedis(url, **kw)
