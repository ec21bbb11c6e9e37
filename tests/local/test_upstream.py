"""The gateway's keep-alive upstream client against real servers: uvicorn apps, and a raw asyncio server where
a test needs a server that misbehaves on purpose (drops a connection mid-request, HTTP/1.0, 100 Continue)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from tests.helpers import serve

from stackwright.local.gateway import build_app
from stackwright.local.ports import free_port
from stackwright.local.routing import EdgeRoute
from stackwright.local.upstream import UpstreamPool, UpstreamUnavailable

SSE_DONE = threading.Event()
STREAM_STOPPED = threading.Event()


def _app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                             "body": (await request.body()).decode(), "x-test": request.headers.get("x-test"),
                             "host": request.headers.get("host"), "port": request.client.port})  # type: ignore[union-attr]

    async def chunked(request: Request) -> StreamingResponse:
        async def gen() -> Any:
            for i in range(200):
                yield b"%05d" % i * 100  # 500 bytes per chunk, 100 kB in all
                if i % 50 == 0:
                    await asyncio.sleep(0.01)

        return StreamingResponse(gen(), media_type="application/octet-stream")  # no content-length: chunked

    async def events(request: Request) -> StreamingResponse:
        async def gen() -> Any:
            for i in range(3):
                yield f"data: {i}\n\n".encode()
                await asyncio.sleep(0.3)
            SSE_DONE.set()

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def endless(request: Request) -> StreamingResponse:
        async def gen() -> Any:
            try:
                while True:
                    yield b"data: tick\n\n"
                    await asyncio.sleep(0.05)
            finally:
                STREAM_STOPPED.set()

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def slow(request: Request) -> JSONResponse:
        await asyncio.sleep(1.0)
        return JSONResponse({})

    return Starlette(routes=[Route("/chunked", chunked), Route("/events", events), Route("/endless", endless),
                             Route("/slow", slow), Route("/{path:path}", echo, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve(_app()) as url:
        yield url


async def _get_json(pool: UpstreamPool, base: str, target: str) -> dict[str, Any]:
    resp = await pool.request("GET", base, target, [])
    try:
        assert resp.status == 200
        return json.loads(await resp.read())
    finally:
        resp.release()


async def test_get_and_post_round_trip(base: str) -> None:
    pool = UpstreamPool()
    try:
        resp = await pool.request("POST", base, "/things/1?a=b", [(b"x-test", b"yes"),
                                                                  (b"content-type", b"text/plain")], b"hello")
        assert resp.status == 200
        assert (b"content-type", b"application/json") in resp.headers
        got = json.loads(await resp.read())
        resp.release()
        assert got["method"] == "POST" and got["path"] == "/things/1" and got["query"] == "a=b"
        assert got["body"] == "hello" and got["x-test"] == "yes" and got["host"] == base.removeprefix("http://")
        got = await _get_json(pool, base, "/plain")
        assert got["method"] == "GET" and got["body"] == "" and got["x-test"] is None
        empty = await pool.request("POST", base, "/empty", [], b"")  # content-length: 0, not a hang
        assert json.loads(await empty.read())["body"] == ""
        empty.release()
    finally:
        await pool.aclose()


async def test_500_concurrent_requests_each_get_their_own_answer(base: str) -> None:
    # 500 connects at once to a server in a thread of this process: on a loaded machine its accept loop can
    # lag the 2 s default connect timeout (a SYN retry alone takes 1 s). This test is about each caller
    # getting its own answer, not about connect latency, so it waits as long as it takes.
    pool = UpstreamPool(connect_timeout=60)
    try:
        answers = await asyncio.gather(*(_get_json(pool, base, f"/n/{i}") for i in range(500)))
        assert [a["path"] for a in answers] == [f"/n/{i}" for i in range(500)]
    finally:
        await pool.aclose()
    capped = UpstreamPool(max_connections=4)  # beyond the cap callers wait for a connection to free up
    try:
        answers = await asyncio.gather(*(_get_json(capped, base, f"/c/{i}") for i in range(100)))
        assert [a["path"] for a in answers] == [f"/c/{i}" for i in range(100)]
        assert len({a["port"] for a in answers}) <= 4
    finally:
        await capped.aclose()


async def test_connections_are_kept_alive_and_reused(base: str) -> None:
    pool = UpstreamPool()
    try:
        sequential = [(await _get_json(pool, base, f"/s/{i}"))["port"] for i in range(100)]
        assert len(set(sequential)) == 1
        ports: set[int] = set()
        for _ in range(10):
            answers = await asyncio.gather(*(_get_json(pool, base, f"/p/{i}") for i in range(50)))
            ports |= {a["port"] for a in answers}
        assert len(ports) <= 60  # 500 requests; about one connection per concurrent caller
    finally:
        await pool.aclose()


async def test_chunked_response_read_whole(base: str) -> None:
    pool = UpstreamPool()
    try:
        resp = await pool.request("GET", base, "/chunked", [])
        assert (b"transfer-encoding", b"chunked") in resp.headers
        assert not any(name == b"content-length" for name, _ in resp.headers)
        assert await resp.read() == b"".join(b"%05d" % i * 100 for i in range(200))
        resp.release()
        port = (await _get_json(pool, base, "/after"))["port"]
        assert (await _get_json(pool, base, "/again"))["port"] == port  # still keep-alive after a chunked body
    finally:
        await pool.aclose()


async def test_event_stream_chunks_arrive_as_sent(base: str) -> None:
    pool = UpstreamPool(timeout=0.2)  # no deadline on iter_chunks(): the stream outlives the header timeout
    SSE_DONE.clear()
    try:
        resp = await pool.request("GET", base, "/events", [])
        assert (b"content-type", b"text/event-stream; charset=utf-8") in resp.headers
        chunks, done_at_first = [], None
        async for chunk in resp.iter_chunks():
            if done_at_first is None:
                done_at_first = SSE_DONE.is_set()
            chunks.append(chunk)
        resp.release()
        assert done_at_first is False  # the first event came before the server had finished
        assert SSE_DONE.is_set() and b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    finally:
        await pool.aclose()


async def test_server_restart_between_requests() -> None:
    port = free_port()
    pool = UpstreamPool()
    try:
        with serve(_app(), port=port) as url:
            first = await _get_json(pool, url, "/one")
        with serve(_app(), port=port) as url:  # the pooled connection was closed by the old server
            resp = await pool.request("POST", url, "/two", [], b"x")  # not retryable: the stale one was skipped
            assert resp.status == 200 and json.loads(await resp.read())["port"] != first["port"]
            resp.release()
        with serve(_app(), port=port) as url:
            assert (await _get_json(pool, url, "/three"))["path"] == "/three"
    finally:
        await pool.aclose()


async def test_nothing_listening_is_unavailable() -> None:
    pool = UpstreamPool()
    with pytest.raises(UpstreamUnavailable):
        await pool.request("GET", f"http://127.0.0.1:{free_port()}", "/", [])
    await pool.aclose()


async def test_slow_answer_times_out(base: str) -> None:
    pool = UpstreamPool(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await pool.request("GET", base, "/slow", [])
    assert time.monotonic() - started < 0.9
    assert (await _get_json(pool, base, "/fine"))["path"] == "/fine"  # the pool is still usable
    await pool.aclose()


class _RawServer:
    """Answers /ok normally; drops the connection without a word on /kill (always) and /kill-once (first time);
    answers /eof as HTTP/1.0 without a length and closes; /continue sends 100 Continue first."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.split(b" ", 2)[:2]
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                key = f"{method.decode()} {path.decode()}"
                self.calls[key] += 1
                if path == b"/kill" or (path == b"/kill-once" and self.calls[key] == 1):
                    writer.transport.abort()
                    return
                if path == b"/eof":
                    writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nhello, until EOF")
                    await writer.drain()
                    writer.close()
                    return
                if path == b"/continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_post_on_a_killed_connection_is_not_retried_but_get_is() -> None:
    raw = _RawServer()
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pool = UpstreamPool()
    try:
        for method, path in [("GET", "/ok"), ("POST", "/kill")]:  # the POST goes out on the pooled connection
            try:
                resp = await pool.request(method, origin, path, [], b"")
                resp.release()
            except UpstreamUnavailable:
                assert path == "/kill"
        assert raw.calls["POST /kill"] == 1
        resp = await pool.request("GET", origin, "/ok", [])
        resp.release()
        resp = await pool.request("GET", origin, "/kill-once", [])  # pooled connection dies, retried on a new one
        assert resp.status == 200 and await resp.read() == b"ok"
        resp.release()
        assert raw.calls["GET /kill-once"] == 2
        resp = await pool.request("GET", origin, "/eof", [])  # no length, HTTP/1.0: the body ends at EOF
        assert resp.status == 200 and await resp.read() == b"hello, until EOF"
        resp.release()
        resp = await pool.request("POST", origin, "/continue", [], b"data")
        assert resp.status == 200 and await resp.read() == b"ok"
        resp.release()
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


def test_gateway_drops_an_event_stream_when_its_client_leaves(base: str) -> None:
    STREAM_STOPPED.clear()
    config: dict[str, Any] = {"routes": [EdgeRoute("/endless", "up").to_dict()], "upstreams": {"up": [base]}}
    with serve(build_app(config)) as edge:
        with httpx.stream("GET", f"{edge}/endless", timeout=5) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert next(resp.iter_bytes()).startswith(b"data: tick")
        assert STREAM_STOPPED.wait(5)  # the gateway closed its upstream connection, so the generator ended
