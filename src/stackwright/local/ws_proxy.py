"""WebSocket proxying for the local gateway: what ALB does for ``websocket: true`` routes in production.

The gateway checks route, token, roles and rate limit first (refusing before ``websocket.accept``, which
uvicorn answers with HTTP 403); :func:`proxy_websocket` then opens the upstream connection, accepts the
client with the subprotocol the upstream chose and pumps messages both ways until one side closes.

Per-route limits from the spec (``websocket: true`` routes' ``max_connections`` and ``idle_timeout_s``,
carried on the :class:`~stackwright.local.routing.EdgeRoute` the gateway puts in ``scope["route"]``):

* ``max_connections`` is per replica, as on EKS: sessions open to one upstream origin on one route are
  counted, and one more is refused before accept (close 1013 "try again later", a 403 handshake), like
  the gateway's other refusals;
* ``idle_timeout_s`` closes a session in which no message went either way for that long with 1001
  ("going away") to both sides. Protocol pings are not messages, so the server's keep-alive pings
  (``WS_PING_INTERVAL_SECONDS``) do not keep a silent stream open. This is the application's timeout;
  the ALB's idle timeout stays 60 s (:data:`stackwright.contract.ALB_IDLE_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote_plus

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

# Per message, from either side (the upstream side is enforced by websockets' max_size).
MAX_MESSAGE = 1 << 20

# Handshake headers belong to each hop; the gateway sets authorization and x-forwarded-* itself.
_NOT_FORWARDED = frozenset({
    b"host", b"connection", b"upgrade", b"keep-alive", b"te", b"trailers", b"transfer-encoding",
    b"proxy-authorization", b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-protocol",
    b"sec-websocket-extensions", b"authorization", b"x-forwarded-for", b"x-forwarded-proto", b"content-length"})

# Close codes that describe a close but may not be sent in a close frame (RFC 6455 7.4.1).
_UNSENDABLE = {1005: 1000, 1006: 1001, 1015: 1011}

# Which side ended the session, and the code and reason to pass on to the other side.
_Outcome = tuple[str, int, str]

#: Close code of a refusal for being over a route's connection limit (RFC 6455 7.4.1: try again later).
OVER_LIMIT = 1013
#: Close code of a session closed for idleness (RFC 6455 7.4.1: going away).
IDLE_CLOSE = 1001

# Open sessions per (route pattern, upstream origin): what max_connections counts. One event loop runs the
# gateway, so a plain dict needs no lock.
_open: dict[tuple[str, str], int] = {}


def open_sessions(pattern: str, origin: str) -> int:
    """Sessions currently proxied on a route to one upstream replica."""
    return _open.get((pattern, origin), 0)


def split_access_token(query: bytes) -> tuple[str | None, bytes]:
    """The ``access_token`` query parameter (browsers cannot set headers on a WebSocket) and the rest.

    The rest keeps its original encoding, so the upstream sees the query exactly as sent minus the token.
    """
    token: str | None = None
    kept: list[bytes] = []
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if unquote_plus(name.decode("latin-1")) == "access_token":
            token = token or unquote_plus(value.decode("latin-1"))
        elif part:
            kept.append(part)
    return token, b"&".join(kept)


async def refuse(send: Send, code: int) -> None:
    """Refuse the handshake: a close before accept, which uvicorn turns into HTTP 403."""
    await send({"type": "websocket.close", "code": code})


async def proxy_websocket(scope: Scope, receive: Receive, send: Send, origin: str,
                          authorization: str | None) -> bool:
    """Proxy one admitted WebSocket session to ``origin`` (``http://host:port``).

    Returns False if the upstream could not be reached or refused the handshake (the client is then
    refused with a 403 too, since nothing was accepted yet), True once the session was accepted and ran.
    """
    route = scope.get("route")
    limit: int | None = getattr(route, "max_connections", None)
    idle: float | None = getattr(route, "idle_timeout_s", None)
    key = (getattr(route, "pattern", scope["path"]), origin)
    if limit is not None and _open.get(key, 0) >= limit:
        await refuse(send, OVER_LIMIT)
        return False
    _open[key] = _open.get(key, 0) + 1
    try:
        return await _session(scope, receive, send, origin, authorization, idle)
    finally:
        _open[key] -= 1
        if not _open[key]:
            del _open[key]


async def _session(scope: Scope, receive: Receive, send: Send, origin: str, authorization: str | None,
                   idle: float | None) -> bool:
    _, query = split_access_token(scope.get("query_string", b""))
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    if query:
        target += "?" + query.decode("latin-1")
    uri = "ws://" + origin.split("://", 1)[-1] + target
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
    if authorization:
        headers.append(("authorization", authorization))
    headers.append(("x-forwarded-for", (scope.get("client") or ("unknown", 0))[0]))
    headers.append(("x-forwarded-proto", "http"))
    try:
        # proxy=None: never route loopback traffic through an HTTP(S)_PROXY from the environment.
        # compression=None: on loopback deflate only costs CPU (and audio does not compress anyway).
        # user_agent_header=None: the client's own User-Agent is forwarded with the other headers.
        upstream = await connect(uri, subprotocols=scope.get("subprotocols") or None, additional_headers=headers,
                                 user_agent_header=None, proxy=None, compression=None, max_size=MAX_MESSAGE,
                                 open_timeout=10)
    except (OSError, TimeoutError, InvalidHandshake):
        await refuse(send, 1011)
        return False
    try:
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        except OSError:  # the client left while we were connecting upstream
            return True
        side, code, reason = await _pump(receive, send, upstream, idle)
        code = _UNSENDABLE.get(code, code)
        if side != "upstream":
            await upstream.close(code, reason)
        if side != "client":
            with contextlib.suppress(OSError):  # uvicorn's ClientDisconnected: the client is gone already
                await send({"type": "websocket.close", "code": code, "reason": reason})
        return True
    finally:
        await upstream.close()  # idempotent; also covers cancellation and unexpected errors


async def _pump(receive: Receive, send: Send, upstream: ClientConnection, idle: float | None = None) -> _Outcome:
    """Run both directions (and the idle watchdog) until one ends; the others are cancelled so no task
    outlives the session."""
    loop = asyncio.get_running_loop()
    last = [loop.time()]  # monotonic time of the last message either way, shared with the watchdog
    tasks = [asyncio.create_task(_client_to_upstream(receive, upstream, last)),
             asyncio.create_task(_upstream_to_client(upstream, send, last))]
    if idle is not None:
        tasks.append(asyncio.create_task(_idle_watchdog(last, idle)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return next(iter(done)).result()


async def _idle_watchdog(last: list[float], idle: float) -> _Outcome:
    loop = asyncio.get_running_loop()
    while (quiet := loop.time() - last[0]) < idle:
        await asyncio.sleep(idle - quiet)
    return "idle", IDLE_CLOSE, f"no message for {idle:g} s"


async def _client_to_upstream(receive: Receive, upstream: ClientConnection, last: list[float]) -> _Outcome:
    loop = asyncio.get_running_loop()
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return "client", message.get("code", 1005), message.get("reason") or ""
        last[0] = loop.time()
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if _size(data) > MAX_MESSAGE:
            return "oversize", 1009, f"message exceeds {MAX_MESSAGE} bytes"
        try:
            await upstream.send(data)
        except ConnectionClosed as exc:
            return "upstream", *_close_of(exc)


async def _upstream_to_client(upstream: ClientConnection, send: Send, last: list[float]) -> _Outcome:
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await upstream.recv()
        except ConnectionClosed as exc:
            return "upstream", *_close_of(exc)
        last[0] = loop.time()
        try:
            await send({"type": "websocket.send", "text" if isinstance(data, str) else "bytes": data})
        except OSError:
            return "client", 1006, ""


def _size(data: str | bytes) -> int:
    # A str of n characters is at most 4n UTF-8 bytes: only encode it when it could be too big.
    if isinstance(data, bytes) or len(data) * 4 <= MAX_MESSAGE:
        return len(data)
    return len(data.encode())


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    # rcvd is the upstream's close; sent is ours when websockets closed it (e.g. 1009 for an oversize message).
    frame = exc.rcvd or exc.sent
    return (frame.code, frame.reason) if frame else (1006, "")
