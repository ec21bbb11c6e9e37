"""The edge gateway streams large request and response bodies: bounded memory, backpressure, limits, HEAD.

The gateway runs as its own process (``python -m stackwright.local.gateway``), as ``stackwright up`` runs it, so
its memory can be read from ``/proc/<pid>/status``; the upstream is a raw ASGI app under uvicorn in this process.
Peak memory is measured with VmHWM after resetting it (``/proc/<pid>/clear_refs`` ← ``5``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import serve

from stackwright.local.ports import free_port
from stackwright.local.routing import EdgeRoute

pytestmark = pytest.mark.integration

MIB = 1 << 20
BIG = 256 * MIB
BLOCK = hashlib.shake_256(b"stackwright").digest(MIB)  # 1 MiB of pseudo-random bytes, repeated
LIMITED = 1 * MIB  # max_body of /limited


def _expected_sha(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // MIB):
        digest.update(BLOCK)
    return digest.hexdigest()


class Sink:
    """What the upstream saw: per request path the bytes received and how the request ended."""

    def __init__(self) -> None:
        self.received = 0  # body bytes of the current upload so far (read by the backpressure test)
        self.stall = threading.Event()  # set: /stall stops reading after its first MiB until `go` is set
        self.go = threading.Event()
        self.ended: dict[str, tuple[int, str]] = {}  # path -> (bytes received, "complete" | "disconnect")
        self.download_stopped = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] in ("GET", "HEAD") and path == "/download":
            await self._download(scope, send)
        elif path == "/endless":
            await self._endless(send)
        else:
            await self._upload(path, receive, send)

    async def _upload(self, path: str, receive: Any, send: Any) -> None:
        import asyncio

        digest, self.received, outcome = hashlib.sha256(), 0, "complete"
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                outcome = "disconnect"
                break
            digest.update(message.get("body", b""))
            self.received += len(message.get("body", b""))
            if path == "/stall" and self.received >= MIB and not self.go.is_set():
                self.stall.set()  # stop reading: everything behind us has to wait
                while not self.go.is_set():
                    await asyncio.sleep(0.02)
            if not message.get("more_body"):
                break
        self.ended[path] = (self.received, outcome)
        if outcome == "complete":
            body = json.dumps({"size": self.received, "sha256": digest.hexdigest()}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

    async def _download(self, scope: dict[str, Any], send: Any) -> None:
        size = int(scope["query_string"].decode().removeprefix("size="))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(size).encode())]})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        for _ in range(size // MIB):
            await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _endless(self, send: Any) -> None:
        # No Content-Length and not an event stream: before streaming, the gateway read such a body whole.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        try:
            for _ in range(100_000):  # 100 GiB: "forever" for this test
                await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        finally:  # uvicorn raises once the gateway has closed the connection (ASGI spec >= 2.4), or we finish
            self.download_stopped.set()


def _status(pid: int, field: str) -> int:
    """``field`` (VmRSS, VmHWM) of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Edge:
    def __init__(self, base: str, proc: subprocess.Popen[bytes], sink: Sink) -> None:
        self.base, self.proc, self.sink = base, proc, sink

    def reset_peak(self) -> int:
        """Reset the gateway's peak RSS to its current RSS; return that (bytes)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        return _status(self.proc.pid, "VmRSS")

    def peak(self) -> int:
        return _status(self.proc.pid, "VmHWM")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    sink = Sink()
    with serve(sink) as upstream:
        port = free_port()
        config = {"port": port, "max_body": 1024 * MIB,
                  "routes": [EdgeRoute("/limited", "up", max_body=LIMITED).to_dict(), EdgeRoute("/", "up").to_dict()],
                  "upstreams": {"up": [upstream]}}
        path = tmp_path_factory.mktemp("edge") / "gateway.json"
        path.write_text(json.dumps(config))
        proc = subprocess.Popen([sys.executable, "-m", "stackwright.local.gateway", str(path)], env=os.environ.copy())
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/download?size=0", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
            yield Edge(base, proc, sink)
        finally:
            proc.terminate()
            proc.wait(10)


def _chunks(size: int, counter: list[int] | None = None) -> Iterator[bytes]:
    view = memoryview(BLOCK)
    for _ in range(size // MIB):
        for i in range(0, MIB, 64 * 1024):
            if counter is not None:
                counter[0] += 64 * 1024
            yield bytes(view[i:i + 64 * 1024])


def test_a_256_mib_upload_streams_through_in_bounded_memory(edge: Edge) -> None:
    before = edge.reset_peak()
    resp = httpx.post(f"{edge.base}/upload", content=_chunks(BIG), headers={"content-length": str(BIG)}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"size": BIG, "sha256": _expected_sha(BIG)}
    grew = edge.peak() - before
    assert grew < 32 * MIB, f"the gateway's RSS grew by {grew / MIB:.1f} MiB"


def test_a_256_mib_download_streams_through_in_bounded_memory(edge: Edge) -> None:
    before = edge.reset_peak()
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", f"{edge.base}/download?size={BIG}", timeout=120) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-length"] == str(BIG)  # the upstream's, kept while streaming
        for chunk in resp.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    assert (size, digest.hexdigest()) == (BIG, _expected_sha(BIG))
    grew = edge.peak() - before
    assert grew < 32 * MIB, f"the gateway's RSS grew by {grew / MIB:.1f} MiB"


def test_a_slow_upstream_slows_the_client_down(edge: Edge) -> None:
    edge.sink.stall.clear()
    edge.sink.go.clear()
    before = edge.reset_peak()
    sent = [0]
    result: dict[str, Any] = {}

    def upload() -> None:  # chunked (no Content-Length): the body the gateway cannot size up front
        result["resp"] = httpx.post(f"{edge.base}/stall", content=_chunks(BIG, sent), timeout=120)

    client = threading.Thread(target=upload)
    client.start()
    try:
        assert edge.sink.stall.wait(30), "the upstream never got the first MiB"
        # Wait until the client is blocked in send() (its count stops moving): every buffer on the way is full.
        last, still_since = -1, time.monotonic()
        while time.monotonic() - still_since < 1.0 and sent[0] < BIG:
            if sent[0] != last:
                last, still_since = sent[0], time.monotonic()
            time.sleep(0.05)
        blocked_at = sent[0]
        grew = edge.peak() - before
    finally:
        edge.sink.go.set()
        client.join(120)
    assert blocked_at < BIG // 2, f"the client sent {blocked_at / MIB:.0f} MiB while the upstream read 1 MiB"
    assert grew < 32 * MIB, f"the gateway's RSS grew by {grew / MIB:.1f} MiB"
    assert result["resp"].status_code == 200
    assert result["resp"].json() == {"size": BIG, "sha256": _expected_sha(BIG)}


def test_a_chunked_body_past_max_body_gets_413_and_the_upstream_exchange_is_aborted(edge: Edge) -> None:
    edge.sink.ended.pop("/limited", None)
    resp = httpx.post(f"{edge.base}/limited", content=_chunks(4 * MIB), timeout=30)
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["detail"] == f"request body exceeds {LIMITED} bytes"
    # The body was on its way to the upstream (streamed), and the gateway broke the exchange off there.
    deadline = time.monotonic() + 10
    while "/limited" not in edge.sink.ended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "/limited" in edge.sink.ended, "the upstream never saw the request (the body was not streamed)"
    received, outcome = edge.sink.ended["/limited"]
    assert outcome == "disconnect" and 0 < received <= LIMITED


def test_head_keeps_the_upstreams_content_length(edge: Edge) -> None:
    resp = httpx.head(f"{edge.base}/download?size={5 * MIB}", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-length"] == str(5 * MIB)
    assert resp.content == b""


def test_a_client_leaving_mid_download_frees_the_upstream_connection(edge: Edge) -> None:
    edge.sink.download_stopped.clear()
    with httpx.stream("GET", f"{edge.base}/endless", timeout=10) as resp:
        assert resp.status_code == 200 and "content-length" not in resp.headers
        assert len(next(resp.iter_raw())) > 0
    assert edge.sink.download_stopped.wait(10)  # the gateway closed its upstream connection: the sender stopped


@pytest.mark.parametrize(("declared", "sent"), [(1000, 3), (60_000, 5_000), (100_000, 5_000)])
def test_a_body_cut_off_by_the_client_never_reaches_the_upstream(edge: Edge, declared: int, sent: int) -> None:
    # Found by a newcomer: a small body (buffered path) cut off by a disconnect was forwarded as if complete,
    # so the file service stored a 3-byte "upload" of a declared 1000 bytes.
    import socket

    path = f"/cut-{declared}"
    host, port = edge.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {declared}\r\n\r\n".encode()
                     + b"x" * sent)
        time.sleep(0.5)  # the partial body is in; now the client goes away
    time.sleep(1.0)
    received = edge.sink.ended.get(path)
    # The upstream either never saw the request, or saw it end in a disconnect: never as a complete request.
    assert received is None or received[1] == "disconnect", received
