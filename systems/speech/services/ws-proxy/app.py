"""ws-proxy: the public streaming endpoint (``/asr``, vosk-server's WebSocket protocol; see the README).

Per stream it

1. authenticates the caller on the handshake (``Authorization: Bearer`` or ``?access_token=``; the local
   edge checks a token too, on EKS this is the only check): a missing, bad or expired token is refused
   before accept (close 1008, an HTTP 403 handshake). The credential may also be an API key (``sk_...``,
   issued by imp-backend-api; the route's ``api_key_prefixes`` has the local edge pass it through, so this
   is its only check everywhere): it is checked with imp-backend-api on every handshake (only its SHA-256
   is stored there, and nothing is cached here, so a revoked key is refused from the next handshake on);
2. admits it against the caller's concurrent-stream limit, kept in Redis as a sorted set of the user's
   open sessions scored by a lease deadline that every open stream renews (``STREAM_LEASE_S``): a proxy
   that dies leaves leases that expire on their own, and after a Redis restart the next renewal puts every
   open session back, so limits recover without any rebuild. Over the limit: accept, close 1013;
3. checks every client message before passing it to stt-api: binary frames of PCM16 up to
   ``MAX_FRAME_BYTES`` (1009 over it, 1003 for an odd length), text messages that are a config with
   ``sample_rate`` 16000 or ``{"eof": 1}`` (1003 otherwise), at most ``MAX_STREAM_S`` of audio or wall time
   (then the last text is delivered and the stream closed with 1008), a message at least every
   ``IDLE_TIMEOUT_S`` (1001), a client that reads its answers within ``SEND_TIMEOUT_S`` (1008);
4. answers each client frame itself, at once, with what stt-api has pushed (the oldest final the client has
   not had, else the latest partial; see :class:`Answers`), so a frame's round trip ends here;
5. reports usage to imp-backend-api as numbered records per session (one per final result answered mid-stream
   plus one at the end, audio milliseconds since the previous record): the updater stores each (session, seq)
   once, so a retried report is never counted twice. A record imp-backend-api does not take within
   ``USAGE_TRIES`` tries goes to the Redis list ``usage:outbox``, which every replica drains in the background
   (:func:`drain_outbox`) once imp-backend-api answers again, so an outage of it delays usage, not loses it.

If stt-api goes away mid-stream (a crash, a deploy) the client gets 1012 (service restart: reconnect); at
capacity stt-api's 1013 and its reason are passed on. Session state (user, started, audio ms, records
reported, status) is the Redis hash ``session:<id>``, kept ``SESSION_TTL_S`` after the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any

import aiohttp
from fastapi import WebSocket, WebSocketDisconnect
from prometheus_client import Counter, Gauge
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from stackwright.runtime import Problem, Service

svc = Service(title="ws-proxy")
app = svc.app
cache = svc.redis("cache")
log = logging.getLogger("speech.ws-proxy")

SAMPLE_RATE = 16000
MAX_STREAMS_PER_USER = int(svc.settings.get("MAX_STREAMS_PER_USER", "2") or 2)
MAX_FRAME_BYTES = int(svc.settings.get("MAX_FRAME_BYTES", "65536") or 65536)
MAX_STREAM_S = float(svc.settings.get("MAX_STREAM_S", "600") or 600)
IDLE_TIMEOUT_S = float(svc.settings.get("IDLE_TIMEOUT_S", "30") or 30)
SEND_TIMEOUT_S = float(svc.settings.get("SEND_TIMEOUT_S", "10") or 10)
STREAM_LEASE_S = float(svc.settings.get("STREAM_LEASE_S", "30") or 30)
SESSION_TTL_S = int(svc.settings.get("SESSION_TTL_S", "86400") or 86400)
USAGE_TRIES = int(svc.settings.get("USAGE_TRIES", "5") or 5)
USAGE_TIMEOUT_S = float(svc.settings.get("USAGE_TIMEOUT_S", "5") or 5)
OUTBOX = "usage:outbox"  # usage records imp-backend-api did not take in time (JSON), oldest first
OUTBOX_EVERY_S = 2.0
STT_URL = "ws://" + svc.settings.service_url("stt-api").split("://", 1)[-1] + "/stt"
BACKEND_URL = svc.settings.service_url("imp-backend-api")
API_KEY_PREFIX = "sk_"  # imp-backend-api's keys; a JWT never starts so (its header is base64url JSON: "eyJ")

OPEN = Gauge("ws_proxy_streams_open", "client streams open on this replica")
CLOSED = Counter("ws_proxy_streams_closed_total", "client streams closed, by close code", ["code"])
OUTBOXED = Counter("ws_proxy_usage_outboxed_total", "usage records put in the Redis outbox after failed tries")
USAGE_LOST = Counter("ws_proxy_usage_lost_total", "usage records neither taken nor kept (refused 4xx, or Redis down)")

# KEYS[1] the user's open sessions (zset: session -> lease deadline); ARGV: now, deadline, session, limit.
# Expired leases are dropped first, so a crashed proxy's sessions stop counting after one lease.
ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2] - ARGV[1]) + 60)
return 1
"""

# aiohttp for the calls to imp-backend-api (a usage record per stream, a key check per API-key handshake): httpx
# cost ~1.5 ms of this process' CPU per call (py-spy: 16% of ws-proxy's Python time over the corpus, on the
# event loop that the next stream's handshake waits for); aiohttp's client a fraction of that.
_http: aiohttp.ClientSession | None = None
_CALL_ERRORS = (aiohttp.ClientError, TimeoutError)


@svc.on_startup
async def open_http() -> None:
    global _http
    _http = aiohttp.ClientSession(BACKEND_URL, timeout=aiohttp.ClientTimeout(total=USAGE_TIMEOUT_S))


@svc.on_shutdown
async def close_http() -> None:
    if _http is not None:
        await _http.close()


# What sending to (or closing) a client that has gone raises: Starlette's WebSocketDisconnect (uvicorn's
# ClientDisconnected beneath it); RuntimeError or OSError at other moments of a close. Before WebSocketDisconnect
# was here, a stream the client closed itself skipped its session's end: no last usage record, its audio unbilled.
_CLIENT_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class Close(Exception):
    """End the client's stream with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Session:
    """One client stream: who, how much audio, which usage records went out."""

    def __init__(self, user: str) -> None:
        self.id = uuid.uuid4().hex
        self.user = user
        self.started = time.time()
        self.audio_bytes = 0
        self.reported_bytes = 0
        self.seq = 0
        self.over_limit = False  # hit MAX_STREAM_S: the last text is delivered, then close 1008
        self.admitted = False  # within the user's stream limit: a refused stream is no session to bill
        self.reports: set[asyncio.Task[None]] = set()

    def report_soon(self) -> None:
        """Report in the background, so a slow backend never delays a transcript."""
        self.background(self.report())

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` beside the stream; the session's end waits for it."""
        task = asyncio.create_task(work)
        self.reports.add(task)
        task.add_done_callback(self.reports.discard)

    @property
    def audio_ms(self) -> int:
        return self.audio_bytes * 1000 // (2 * SAMPLE_RATE)

    async def report(self, final: bool = False) -> None:
        """Send the audio since the last record as record ``seq`` (retried: the updater is idempotent)."""
        ms = (self.audio_bytes - self.reported_bytes) * 1000 // (2 * SAMPLE_RATE)
        if ms <= 0 and not (final and self.seq == 0):
            return
        self.seq += 1
        record = {"session_id": self.id, "seq": self.seq, "user_id": self.user, "audio_ms": max(ms, 0),
                  "at": time.time(), "final": final}
        self.reported_bytes = self.audio_bytes
        status = None
        for attempt in range(USAGE_TRIES):
            status = await _post_usage(record)
            if status is not None and status < 500:
                break
            log.warning("usage report %s/%d failed (%s); retrying", self.id, self.seq, status or "no answer")
            await asyncio.sleep(0.2 * 2 ** attempt)
        if status is None or status >= 500:
            await _keep(record)
        elif status >= 400:
            USAGE_LOST.inc()
            log.error("usage report %s/%d refused (%d): not counted", self.id, self.seq, status)
        with contextlib.suppress(Exception):
            await _redis("HSET", f"session:{self.id}", "audio_ms", self.audio_ms, "records", self.seq)


async def _post_usage(record: dict[str, Any]) -> int | None:
    """POST one usage record to imp-backend-api: its HTTP status, or None when it did not answer."""
    assert _http is not None
    try:
        async with _http.post("/internal/usage", json=record) as resp:
            await resp.read()
            return resp.status
    except _CALL_ERRORS:
        return None


async def _keep(record: dict[str, Any]) -> None:
    """Put a record imp-backend-api did not take on the outbox, for :func:`drain_outbox`."""
    try:
        await _redis("RPUSH", OUTBOX, json.dumps(record, sort_keys=True))
        OUTBOXED.inc()
        log.warning("usage report %s/%d kept in %s until imp-backend-api takes it", record["session_id"],
                    record["seq"], OUTBOX)
    except Exception as exc:  # Redis down too: the one case that loses the record
        USAGE_LOST.inc()
        log.error("usage report %s/%d not delivered and not kept (%r)", record["session_id"], record["seq"], exc)


@svc.background
async def drain_outbox() -> None:
    """Send the outbox's records, oldest first, while imp-backend-api takes them; wait and try again when it does
    not. A record leaves the list only after imp-backend-api answered it (LREM of that exact entry), so a
    replica that dies mid-send leaves it for the next try, and two replicas sending the same record count it
    once (the updater stores each session and seq once)."""
    while True:
        try:
            entry = await _redis("LINDEX", OUTBOX, 0)
        except Exception:  # Redis restarting: try again later
            entry = None
        if entry is None:
            await asyncio.sleep(OUTBOX_EVERY_S)
            continue
        status = await _post_usage(json.loads(entry))
        if status is None or status >= 500:
            await asyncio.sleep(OUTBOX_EVERY_S)
            continue
        if status >= 400:
            USAGE_LOST.inc()
            log.error("kept usage report refused (%d): dropped %s", status, entry)
        with contextlib.suppress(Exception):  # Redis gone meanwhile: the record is sent again, counted once
            await _redis("LREM", OUTBOX, 1, entry)


@app.websocket("/asr")
async def asr(ws: WebSocket) -> None:
    authorization = ws.headers.get("authorization")
    if authorization is None and (token := ws.query_params.get("access_token")):
        authorization = f"Bearer {token}"
    try:
        user = await _caller(authorization)
    except Problem as refused:
        log.info("handshake refused: %s", refused)
        await ws.close(1008)  # before accept: the handshake is refused (HTTP 403)
        return
    session = Session(user)
    await ws.accept()
    OPEN.inc()
    code, reason = 1000, ""
    try:
        if not await _admit(session):
            raise Close(1013, f"stream limit reached: {MAX_STREAMS_PER_USER} open streams per user; "
                              "retry when one has ended")
        session.admitted = True
        lease = asyncio.create_task(_renew(session))
        try:
            code, reason = await _relay(ws, session)
        finally:
            lease.cancel()
    except Close as close:
        code, reason = close.code, close.reason
    finally:
        OPEN.dec()
        CLOSED.labels(str(code)).inc()
        # The slot is released as the close goes out, not before it: the ZREM is written to Redis first (tasks
        # run in order, on the one connection commands share), so a client that starts its next stream the moment
        # it sees this one close finds it free, and the client's close does not wait for Redis' answer (an fsync
        # with appendfsync always).
        await asyncio.gather(_release_slot(session), _close_client(ws, code, reason))
        await _end_session(session, code)


async def _close_client(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(*_CLIENT_GONE):
        await ws.close(code, reason[:120])


async def _caller(authorization: str | None) -> str:
    """The user a handshake's credential names: a token's subject, or the owner of a live API key.

    Raises Problem 401 for a missing, bad, expired or revoked credential, 503 when imp-backend-api cannot say
    (a key is never taken on trust).
    """
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential.startswith(API_KEY_PREFIX):
        return (await svc.authenticate(authorization)).sub
    assert _http is not None
    try:
        async with _http.post("/internal/keys/verify", json={"key": credential}) as resp:
            status = resp.status
            body = await resp.json() if status == 200 else None
    except _CALL_ERRORS as exc:
        raise Problem(503, f"API key could not be checked: {exc!r}") from None
    if status in (404, 422):
        raise Problem(401, "unknown or revoked API key")
    if status != 200 or not isinstance(body, dict) or "user_id" not in body:
        raise Problem(503, f"API key could not be checked ({status})")
    return str(body["user_id"])


async def _redis(*args: str | float) -> Any:
    """One Redis command on the service's multiplexed connection, where commands issued together go out in one
    write and come back in one round trip (redis-py's pool, one round trip each, when there is none)."""
    if cache.fast is not None:
        return await cache.fast.execute(*args)
    return await cache.execute_command(*args)


async def _renew(session: Session) -> None:
    # ZADD re-creates the entry if Redis lost it (restart): the limit counts this stream again within a lease.
    while True:
        await asyncio.sleep(STREAM_LEASE_S / 3)
        try:
            await cache.zadd(f"streams:{session.user}", {session.id: time.time() + STREAM_LEASE_S})
            await cache.hset(f"session:{session.id}", mapping={"user": session.user, "status": "open",
                                                               "audio_ms": session.audio_ms})
        except Exception as exc:  # Redis down: keep streaming, try again next round
            log.warning("lease renewal failed: %s", exc)


async def _start_session(session: Session) -> bool:
    """Admit the stream against the user's limit and write its session hash (written either way: a refused
    stream's hash records the 1013), in one round trip. False if the user is at the limit."""
    now = time.time()
    key = f"session:{session.id}"
    admitted, _, _ = await asyncio.gather(
        _redis("EVAL", ADMIT, 1, f"streams:{session.user}", now, now + STREAM_LEASE_S, session.id,
               MAX_STREAMS_PER_USER),
        _redis("HSET", key, "user", session.user, "started", session.started, "status", "open", "audio_ms", 0,
               "records", 0),
        _redis("EXPIRE", key, SESSION_TTL_S))
    return bool(admitted)


#: How long a stream over its user's limit waits for a slot before 1013 (seconds). A client that closes a
#: stream and opens the next at once races the old one's release: the edge completes the client's closing
#: handshake itself, before ws-proxy has seen the close (as any proxy that terminates WebSockets does), so the
#: user's count can be one high for a few milliseconds.
ADMIT_WAIT_S = 1.0


async def _admit(session: Session) -> bool:
    """:func:`_start_session`, looked at again every 50 ms for up to ``ADMIT_WAIT_S`` while the user is at the
    limit. False if no slot freed meanwhile."""
    deadline = time.monotonic() + ADMIT_WAIT_S
    while not await _start_session(session):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _release_slot(session: Session) -> None:
    """Take the stream off its user's count of open streams (a refused stream was never on it: a no-op)."""
    try:
        await _redis("ZREM", f"streams:{session.user}", session.id)
    except Exception as exc:  # the lease expires by itself
        log.warning("could not free session %s's slot in Redis: %s", session.id, exc)


async def _end_session(session: Session, code: int) -> None:
    """Record the session's end in Redis, then its last usage record (the slot is already free; a stream refused
    at the user's limit was never a session and reports none)."""
    key = f"session:{session.id}"
    try:
        await asyncio.gather(_redis("HSET", key, "status", f"closed {code}", "ended", time.time()),
                             _redis("EXPIRE", key, SESSION_TTL_S))
    except Exception as exc:  # the hash expires by itself
        log.warning("could not close session %s in Redis: %s", session.id, exc)
    await asyncio.gather(*session.reports, return_exceptions=True)
    if session.admitted:
        await session.report(final=True)


class Answers:
    """What stt-api has said that the client has not been told yet.

    ws-proxy answers each of the client's frames itself, at once, with the oldest final stt-api has sent and the
    client has not had, else the latest partial (what stt-api would answer; vosk answers every frame exactly
    once), and passes the frame on: stt-api (asked for ``"per_frame": false``) sends finals as they are decoded
    and partials as they change instead of one answer per frame. A frame's round trip to the client then ends
    here instead of at stt-api (measured: see the speech reading in bench/RESULTS.md), and a final reaches the
    client with the next frame after it is decoded, as before.
    """

    PARTIAL = '{"partial": ""}'

    def __init__(self) -> None:
        self.finals: deque[str] = deque()  # stt-api's JSON text, as sent
        self.partial = self.PARTIAL

    async def answer(self, ws: WebSocket, session: Session) -> None:
        """Answer one client frame."""
        if self.finals:
            await _send(ws, self.finals.popleft())
            session.report_soon()
        else:
            await _send(ws, self.partial)


#: The first message to stt-api: answers as they happen, not one per frame (see Answers).
STT_CONFIG = '{"config": {"per_frame": false}}'


async def _relay(ws: WebSocket, session: Session) -> tuple[int, str]:
    """Pump the stream both ways until it ends; the close code and reason for the client."""
    deadline = time.monotonic() + MAX_STREAM_S
    # stt-api is connected only once audio (or eof) arrives: a socket that never sends audio never takes one of
    # the recognizer's slots, so idle sockets cost ws-proxy memory only (and are closed after IDLE_TIMEOUT_S).
    held: list[str | bytes] = [STT_CONFIG]
    ended = False
    while not ended and isinstance(held[-1], str):  # configs are held until audio or eof
        payload, ended = await _next_message(ws, session, deadline)
        held.append(payload)
    answers = Answers()
    upstream = Upstream(held)
    opening = asyncio.create_task(upstream.open())
    try:
        if not ended:  # the first frame is answered while the recognizer is connected
            await answers.answer(ws, session)
        to_client = asyncio.create_task(_stt_to_client(opening, ws, session, answers))
        to_stt = asyncio.create_task(_client_to_stt(ws, upstream, session, deadline, ended, answers))
        done, _ = await asyncio.wait({to_stt, to_client}, return_when=asyncio.FIRST_COMPLETED)
        if to_stt in done and (to_stt.exception() is None or isinstance(to_stt.exception(), ConnectionClosed)):
            # The client finished ({"eof": 1}) or hit a limit after which the last text is still delivered:
            # let stt-api's result reach the client (bounded, so a stuck recognizer cannot hold the stream);
            # or stt-api closed: reading its close gives the client the code.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(to_client), 60)
        for task in (to_stt, to_client):
            task.cancel()
        results = await asyncio.gather(to_stt, to_client, return_exceptions=True)
    finally:
        # The client's close need not wait for the closing handshake with stt-api: it ends in the background.
        session.background(upstream.close(opening))
    for result in results:
        if isinstance(result, Close):
            return result.code, result.reason
    outcome = results[1]
    if isinstance(outcome, tuple):
        return outcome
    return 1000, ""


class Upstream:
    """The connection to stt-api, opened beside the stream once audio comes: what is sent before it is open
    waits in ``pending``, in order (the client's next frames are answered meanwhile, not held up by the
    handshake)."""

    def __init__(self, held: list[str | bytes]) -> None:
        self.pending = list(held)
        self.conn: ClientConnection | None = None

    async def open(self) -> ClientConnection:
        """Connect and send what is pending. Raises OSError, TimeoutError or InvalidHandshake."""
        conn = await connect(STT_URL, proxy=None, compression=None, max_size=1 << 20, open_timeout=5,
                             user_agent_header=None)
        try:
            while self.pending:  # send() appends while this awaits; nothing is sent directly until conn is set
                await conn.send(self.pending.pop(0))
        except ConnectionClosed:  # closed at once (at capacity): reading it gives the client its code
            self.pending.clear()
        self.conn = conn
        return conn

    async def send(self, payload: str | bytes) -> None:
        if self.conn is None:
            self.pending.append(payload)
        else:
            await self.conn.send(payload)

    async def close(self, opening: asyncio.Task[ClientConnection]) -> None:
        if not opening.done():
            opening.cancel()
        elif not opening.cancelled() and opening.exception() is None:
            await opening.result().close()


async def _client_to_stt(ws: WebSocket, upstream: Upstream, session: Session, deadline: float, ended: bool,
                         answers: Answers) -> None:
    """Answer, check and forward client messages; returns after ``{"eof": 1}`` (or a limit that ends the
    stream gracefully); raises Close for a client error, which ends the stream at once."""
    while not ended:
        payload, ended = await _next_message(ws, session, deadline)
        if not ended:  # an audio frame (configs come before the audio; eof is answered by stt-api's result)
            await answers.answer(ws, session)
        await upstream.send(payload)


async def _next_message(ws: WebSocket, session: Session, deadline: float) -> tuple[str | bytes, bool]:
    """The client's next message, checked, as it goes to stt-api, and whether it ends the stream (eof, or the
    maximum duration reached: then an eof goes instead, so the last text is still delivered)."""
    try:
        # asyncio.timeout, not wait_for: no task per message (CPU per frame 0.63-0.77 -> 0.47-0.57 ms).
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            message = await ws.receive()
    except TimeoutError:
        raise Close(1001, f"no audio for {IDLE_TIMEOUT_S:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise Close(message.get("code", 1000), "client left")
    data = message.get("bytes")
    if data is not None:
        if len(data) > MAX_FRAME_BYTES:
            raise Close(1009, f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
        if len(data) % 2:
            raise Close(1003, "frames must be 16 kHz mono 16-bit PCM (an even number of bytes)")
        session.audio_bytes += len(data)
        if session.audio_bytes / (2 * SAMPLE_RATE) > MAX_STREAM_S or time.monotonic() > deadline:
            session.over_limit = True
            return '{"eof": 1}', True
        return data, False
    request = _check_text(message.get("text") or "")
    return json.dumps(request), "eof" in request


def _check_text(text: str) -> dict[str, Any]:
    try:
        request = json.loads(text)
    except ValueError:
        raise Close(1003, 'text messages must be JSON: {"config": {...}} or {"eof": 1}') from None
    if not isinstance(request, dict) or not ({"config", "eof"} & request.keys()):
        raise Close(1003, 'unknown message: expected {"config": {...}} or {"eof": 1}')
    config = request.get("config")
    if config is not None:
        rate = config.get("sample_rate") if isinstance(config, dict) else None
        if rate is not None and rate != SAMPLE_RATE:
            raise Close(1003, f"sample_rate {rate} not supported: send {SAMPLE_RATE} Hz mono PCM16")
    return request


async def _stt_to_client(opening: asyncio.Task[ClientConnection], ws: WebSocket, session: Session,
                         answers: Answers) -> tuple[int, str]:
    """Take stt-api's finals and partials for the client's next frames; after ``{"eof": 1}``, answer the client
    with every final it has not had as one result (vosk's last message). The close code for the client: once
    that result is delivered, or when stt-api closes first (or cannot be reached)."""
    try:
        upstream = await opening
    except (OSError, TimeoutError, InvalidHandshake):
        return 1013, "recognizer unavailable; retry in 2 s"
    while True:
        try:
            answer = await upstream.recv()
        except ConnectionClosed as exc:
            frame = exc.rcvd
            if frame is None or frame.code in (1006, 1011, 1001, 1012):
                return 1012, "recognizer restarted; reconnect"  # crashed or went away mid-stream
            return frame.code, frame.reason
        text = answer if isinstance(answer, str) else answer.decode()
        if text.startswith('{"partial"'):  # most messages: no parsing
            answers.partial = text
            continue
        message = json.loads(text)
        if "eof" not in message:
            answers.finals.append(text)
            continue
        parts = [json.loads(f) for f in answers.finals] + [message]
        answers.finals.clear()
        await _send(ws, json.dumps({"result": [w for p in parts for w in p.get("result", [])],
                                    "text": " ".join(p["text"] for p in parts if p.get("text"))}))
        # No report here: the session's last record, once the client has its close, counts this audio.
        if session.over_limit:
            return 1008, f"stream exceeds the maximum of {MAX_STREAM_S:g} s"
        return 1000, ""


async def _send(ws: WebSocket, text: str) -> None:
    """One answer to the client, who must read it within SEND_TIMEOUT_S."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await ws.send_text(text)
    except TimeoutError:
        raise Close(1008, f"client did not read for {SEND_TIMEOUT_S:g} s") from None
    except _CLIENT_GONE:
        raise Close(1001, "client left") from None


@app.get("/{path:path}", include_in_schema=False)
async def not_found(path: str) -> None:
    raise Problem(404, "no such endpoint: ws-proxy serves the WebSocket /asr")
