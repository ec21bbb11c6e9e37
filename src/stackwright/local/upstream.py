"""A lean keep-alive HTTP/1.1 client for the gateway's proxying: asyncio.Protocol + httptools.

aiohttp's client machinery (request/response objects, stream writer, timeout contexts, payload registry) was most
of the gateway's CPU per proxied request: 100-150 µs of client CPU per POST, against 25-40 µs here (5,000 POSTs at
64 concurrent against a trivial uvicorn app). A proxy needs little: one ``transport.write`` per request,
the C parser uvicorn uses (``httptools.HttpResponseParser``) for the answer, and idle keep-alive connections per
origin, reused LIFO (the most recently used one is the least likely to have been closed by the server).

Failure semantics:
- refused, reset or closed before a response → ``UpstreamUnavailable`` (a ``ConnectionError``); idle connections
  the server has closed are detected (``is_closing`` and a one-byte peek) and never used; a reused connection that
  still dies before any response byte is retried once on a new connection, for idempotent methods only;
- a streamed request body of which the upstream reads nothing for ``timeout``, or no response headers within
  ``timeout`` (``read()`` of the body shares that deadline; ``iter_chunks()`` has none,
  since event streams last as long as the client stays), or a connect slower than ``connect_timeout`` → the
  builtin ``TimeoutError``.

Request bodies either go in one write with the head (``request``: the small-request hot path) or stream
(``stream_request``: large uploads). A streamed body is written as it comes from its iterator, waiting while the
transport's write buffer is above its high-water mark (``pause_writing``/``resume_writing``), so a slow upstream
slows the producer instead of growing a buffer; its response deadline starts when the last body byte is written,
and it is never retried (the body is consumed).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from ..runtime.peer_probe import PeerProbe

__all__ = ["IDEMPOTENT", "UpstreamPool", "UpstreamResponse", "UpstreamUnavailable"]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PAUSE_AT = 1 << 20  # buffered body bytes at which we stop reading from the upstream (a slow event-stream client)


class UpstreamUnavailable(ConnectionError):
    """The upstream refused, reset or closed the connection before (or while) answering."""


class UpstreamResponse:
    """An upstream's status and headers; the body comes through ``read()`` or ``iter_chunks()``.

    Always call ``release()`` when done, also after an error: it pools or closes the connection.
    """

    def __init__(self, conn: _Connection) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []  # names lower-cased, in the order received
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._error: BaseException | None = None
        self._released = False

    @property
    def complete(self) -> bool:
        """True when the whole body has been received (``read()`` then returns without waiting)."""
        return self._complete

    async def read(self) -> bytes:
        """The whole body; raises ``UpstreamUnavailable`` or ``TimeoutError`` if it breaks off."""
        if self._complete:  # the common case: the whole response came in one read
            body = b"".join(self._chunks)
            self._chunks.clear()
            return body
        parts = []
        while (chunk := await self._next()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive, with no deadline; ends quietly if ``release()`` is called meanwhile."""
        self._conn.cancel_timer()
        while (chunk := await self._next()) is not None:
            yield chunk

    def release(self) -> None:
        """Return the connection to the pool if the body was fully received and keep-alive, else close it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if self._complete and conn.keep_alive and not conn.closed:
            conn.pool._release(conn)
        else:
            conn.close()  # wakes a pending read/iteration, which ends because we are released

    async def _next(self) -> bytes | None:
        while not self._chunks:
            if self._released or self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._waiter = self._conn.loop.create_future()
            await self._waiter
        if self._released:
            return None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._conn.paused and self._size < _PAUSE_AT // 4:
            self._conn.resume()
        return chunk

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Origin:
    __slots__ = ("host", "host_header", "idle", "name", "port", "total", "waiters")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"upstream origin must be http://host[:port], not {url!r}")
        self.name, self.host, self.port = url, parts.hostname, parts.port or 80
        self.host_header = parts.netloc.encode("idna")
        self.idle: list[_Connection] = []
        self.total = 0  # open connections plus connects in progress, reserved slots included
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries at most one exchange at a time (no pipelining)."""

    def __init__(self, pool: UpstreamPool, origin: _Origin) -> None:
        self.pool, self.origin, self.loop = pool, origin, pool._loop
        self.parser = HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.probe: PeerProbe | None = None
        self.response: UpstreamResponse | None = None
        self.head: asyncio.Future[UpstreamResponse] | None = None
        self.deadline: float | None = None  # loop time by which the response (head, or buffered body) is due
        self.served = 0  # complete responses so far: > 0 means this connection came from the pool
        self.got_bytes = False  # any byte of the current response: then a retry could repeat a handled request
        self.keep_alive = False
        self.head_only = False
        self.informational = False
        self.paused = False
        self.write_paused = False  # the transport's write buffer is above its high-water mark
        self.drain_waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0

    def exchange(self, payload: bytes, head_only: bool) -> asyncio.Future[UpstreamResponse]:
        self.response, self.head = UpstreamResponse(self), self.loop.create_future()
        self.got_bytes, self.head_only = False, head_only
        self.pool._watch(self)
        self.transport.write(payload)  # type: ignore[union-attr]
        return self.head

    async def exchange_streaming(self, head: bytes, body: AsyncIterable[bytes], chunked: bool) -> UpstreamResponse:
        """Write ``head`` then each chunk of ``body`` (chunk-framed if ``chunked``) with backpressure; return the
        response once its headers are in. The response deadline starts after the last body byte is written, so
        a long upload is not cut off. If the upstream answers (or closes) before the body is all sent, sending
        stops there and the connection is not reused. Exceptions from ``body`` propagate (the caller closes)."""
        self.response, self.head = UpstreamResponse(self), self.loop.create_future()
        self.got_bytes, self.head_only = False, False
        transport = self.transport
        assert transport is not None
        pending = head  # the head goes out with the first chunk: one write for a body that fits in one
        async for chunk in body:
            if self.head.done() or self.closed:  # answered early (e.g. a 4xx) or gone: stop sending
                break
            if not chunk:
                continue
            if chunked:
                transport.writelines([pending, b"%x\r\n" % len(chunk), chunk, b"\r\n"])
            else:
                transport.writelines([pending, chunk])
            pending = b""
            if self.write_paused:
                await self._drain()
        else:
            if not self.closed:
                transport.write(pending + b"0\r\n\r\n" if chunked else pending)
        if self.head.done() or self.closed:
            self.keep_alive = False  # whatever is left of the request body would be read as the next request
        elif not self.response._complete:
            self.pool._watch(self)
        return await self.head

    async def _drain(self) -> None:
        # A slow reader is fine (that is the backpressure), one that takes no byte for ``timeout`` seconds is not:
        # without this an upstream that stopped reading would hold the client's upload forever.
        while self.write_paused and not self.closed and not self.head.done():  # type: ignore[union-attr]
            self.drain_waiter = self.loop.create_future()
            try:
                await asyncio.wait_for(self.drain_waiter, self.pool.timeout)
            except TimeoutError:
                raise TimeoutError(f"{self.origin.name} read none of the request body for {self.pool.timeout}s") \
                    from None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.probe = PeerProbe.of(transport)

    def peer_closed(self) -> bool:
        """True when the server closed this idle connection and the loop has not noticed yet (one syscall)."""
        return self.probe is not None and self.probe.peer_closed()

    # -- httptools callbacks (must not raise: the parser would turn it into a parse error) ----------------------

    def on_message_begin(self) -> None:
        if self.response._complete:  # type: ignore[union-attr]
            raise ValueError("a second response to one request")  # surfaces as a parse error: we close

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name.lower(), value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        resp, status = self.response, self.parser.get_status_code()
        assert resp is not None and self.head is not None
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows on the same connection
            self.informational = True
            resp.headers.clear()
            return
        resp.status, self.keep_alive = status, self.parser.should_keep_alive() and not self.head_only
        if not self.head.done():  # else the caller was cancelled and this connection is being closed
            self.head.set_result(resp)
        self._wake_drain()  # an early answer to a streamed body: stop waiting to send the rest
        if self.head_only:  # the parser does not know this was HEAD and would wait for a body; don't reuse it
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        resp = self.response
        assert resp is not None
        resp._chunks.append(body)
        resp._size += len(body)
        if resp._size > _PAUSE_AT and not self.paused:  # don't buffer without bound for a slow consumer
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        resp._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.cancel_timer()
        self.served += 1
        self.response._complete = True  # type: ignore[union-attr]
        self.response._wake()  # type: ignore[union-attr]

    # -- transport events -----------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None or resp._complete:  # bytes nobody asked for: the stream is out of step
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:  # garbage, or a 101 we never asked for
            self._fail(UpstreamUnavailable(f"{self.origin.name} sent an invalid response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.cancel_timer()
        self._wake_drain()  # a streamed body waiting for the write buffer to drain stops sending
        if self.probe is not None:
            self.probe.close()
        if exc is None and self._body_ends_at_eof():
            self.keep_alive = False
            self.on_message_complete()
        else:
            self._fail(UpstreamUnavailable(f"{self.origin.name} closed the connection" + (f": {exc}" if exc else "")))
        self.pool._forget(self)

    def _body_ends_at_eof(self) -> bool:
        # A response with neither Content-Length nor chunked encoding (Connection: close, HTTP/1.0) ends when the
        # server closes; httptools cannot be told about the EOF, so we complete the message ourselves. Not when
        # we closed it (released early, timed out, garbage): then _error is set or the caller has left.
        resp = self.response
        if resp is None or not resp.status or resp._complete or resp._released or resp._error is not None:
            return False
        return not any(name in (b"content-length", b"transfer-encoding") for name, _ in resp.headers)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)  # now, not on a later tick: the slot and any waiting reader are freed at once

    def cancel_timer(self) -> None:
        self.deadline = None  # the pool's sweep forgets this connection at its next pass

    def resume(self) -> None:
        self.paused = False
        if not self.closed:
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _timed_out(self) -> None:
        self.deadline = None
        self._fail(TimeoutError(f"{self.origin.name} did not answer within {self.pool.timeout}s"))
        self.close()

    def _fail(self, exc: BaseException) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        elif self.response is not None and not self.response._complete and self.response._error is None:
            self.response._error = exc
            self.response._wake()


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections per origin, shared by every coroutine of one event loop."""

    def __init__(self, *, timeout: float = 30.0, connect_timeout: float = 2.0, max_idle: int = 256,
                 max_connections: int = 500, idle_timeout: float = 4.0) -> None:
        # idle_timeout below uvicorn's 5 s keep-alive: we drop a connection before the server does, rather than
        # race its close with a POST that must not be retried.
        self.timeout, self.connect_timeout, self.idle_timeout = timeout, connect_timeout, idle_timeout
        self.max_idle, self.max_connections = max_idle, max_connections
        self._origins: dict[str, _Origin] = {}
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound on first use
        self._closed = False
        # Response deadlines are checked by one sweep every _sweep_every seconds over the connections awaiting a
        # response, not by a timer per exchange: call_later + cancel was ~7% of the edge's samples per proxied
        # request (py-spy, fresh-token votes). A deadline so fires up to _sweep_every late (at most 1 s).
        self._waiting: set[_Connection] = set()
        self._sweep_every = min(1.0, timeout / 4)
        self._sweeping: asyncio.TimerHandle | None = None

    async def request(self, method: str, origin: str, target: str | bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes = b"") -> UpstreamResponse:
        """Send one request to ``origin`` (``http://host:port``) for ``target`` (raw path and query).

        ``headers`` are sent as given after ``host`` (and ``content-length``, added when there is a body or the
        method is POST/PUT/PATCH); they must not contain either. Returns once the response headers are in.
        """
        o = self._origin(origin)
        raw = target.encode("latin-1") if isinstance(target, str) else target
        out = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), raw, o.host_header)]
        if body or method in _BODY_METHODS:
            out.append(b"content-length: %d\r\n" % len(body))
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        out += (b"\r\n", body)
        payload = b"".join(out)
        fresh = False
        while True:
            conn = await self._acquire(o, fresh)
            try:
                return await conn.exchange(payload, method == "HEAD")
            except UpstreamUnavailable:
                # A pooled connection that died before any response byte most likely raced the server's close:
                # the request was probably not handled, but only methods safe to repeat may be sent again.
                if fresh or conn.served == 0 or conn.got_bytes or method not in IDEMPOTENT:
                    raise
                fresh = True
            except asyncio.CancelledError:
                conn.close()  # a response may still arrive: this connection is out of step
                raise

    async def stream_request(self, method: str, origin: str, target: str | bytes,
                             headers: list[tuple[bytes, bytes]], body: AsyncIterable[bytes],
                             length: int | None = None) -> UpstreamResponse:
        """Like ``request``, but the body streams from ``body`` as it is produced, with backpressure.

        ``length`` (bytes) is sent as Content-Length when known (the iterator must then yield exactly that
        many bytes), else the body goes ``Transfer-Encoding: chunked``. Never retried: a connection that dies
        raises ``UpstreamUnavailable``. An exception raised by ``body`` (e.g. the client left, or a size limit)
        closes the connection and propagates unchanged. The response deadline (``timeout``) starts once the
        last body byte has been written.
        """
        o = self._origin(origin)
        raw = target.encode("latin-1") if isinstance(target, str) else target
        out = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), raw, o.host_header),
               b"content-length: %d\r\n" % length if length is not None else b"transfer-encoding: chunked\r\n"]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        out.append(b"\r\n")
        conn = await self._acquire(o, False)
        try:
            return await conn.exchange_streaming(b"".join(out), body, length is None)
        except BaseException:
            conn.close()  # part of a body may have gone out, or a response may still arrive: out of step
            raise

    def _origin(self, origin: str) -> _Origin:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._origins.get(origin) or self._origins.setdefault(origin, _Origin(origin))

    async def aclose(self) -> None:
        """Close idle connections; connections in use close when released, and new requests fail."""
        self._closed = True
        for o in self._origins.values():
            while o.idle:
                o.idle.pop().close()

    async def _acquire(self, o: _Origin, fresh: bool) -> _Connection:
        while True:
            while not fresh and o.idle:
                conn = o.idle.pop()
                if self._usable(conn):
                    return conn
                conn.close()
            if o.total < self.max_connections:
                o.total += 1
                return await self._connect(o)
            waiter = self._loop.create_future()
            o.waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed something just as we were cancelled
                    if (conn := waiter.result()) is None:
                        self._slot_freed(o)
                    else:
                        self._release(conn)
                raise
            if handed is None:  # a slot reserved for us
                return await self._connect(o)
            if self._usable(handed):  # just released by another caller (for a retry too: it isn't the dead one)
                return handed
            handed.close()

    def _watch(self, conn: _Connection) -> None:
        """Start ``conn``'s response deadline (``timeout`` from now)."""
        conn.deadline = self._loop.time() + self.timeout
        self._waiting.add(conn)
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        now = self._loop.time()
        for conn in list(self._waiting):
            if conn.deadline is None or conn.closed:
                self._waiting.discard(conn)
            elif now >= conn.deadline:
                self._waiting.discard(conn)
                conn._timed_out()
        self._sweeping = self._loop.call_later(self._sweep_every, self._sweep) if self._waiting else None

    def _usable(self, conn: _Connection) -> bool:
        # The server may have closed an idle connection without the loop having read the EOF yet: peek.
        return (not conn.closed and self._loop.time() - conn.idle_since <= self.idle_timeout
                and not conn.transport.is_closing() and not conn.peer_closed())  # type: ignore[union-attr]

    async def _connect(self, o: _Origin) -> _Connection:
        """Open a connection in a slot already counted in ``o.total`` (freed again if this fails)."""
        try:
            if self._closed:
                raise UpstreamUnavailable("the upstream pool is closed")
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self._loop.create_connection(lambda: _Connection(self, o), o.host, o.port)
        except BaseException as exc:
            self._slot_freed(o)
            if isinstance(exc, TimeoutError):  # before OSError, of which it is a subclass
                raise TimeoutError(f"connecting to {o.name} took longer than {self.connect_timeout}s") from None
            if isinstance(exc, OSError) and not isinstance(exc, UpstreamUnavailable):  # refused, unreachable, DNS
                raise UpstreamUnavailable(f"{o.name} is unavailable: {exc}") from exc
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        o = conn.origin
        conn.response = conn.head = None
        conn.idle_since = self._loop.time()
        if conn.paused:
            conn.resume()
        while o.waiters:  # hand it straight to the longest waiter, so new callers can't overtake it
            waiter = o.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self._closed or len(o.idle) >= self.max_idle:
            conn.close()
            return
        o.idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        o = conn.origin
        if conn in o.idle:  # closed by the server while idle
            o.idle.remove(conn)
        self._slot_freed(o)

    def _slot_freed(self, o: _Origin) -> None:
        while o.waiters:  # the slot passes to a waiter (still counted), which opens a connection in it
            waiter = o.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        o.total -= 1
