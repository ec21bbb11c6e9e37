"""Request bodies through LeanBodyHttpToolsProtocol, on a real server started as the services are started.

The protocol hands a body's pieces to the app without uvicorn's two extra copies (runtime.http_protocol); these
tests hold it to uvicorn's behaviour: every byte, in order, however the client cuts the body; the 413 of the
body limit in the middle of a stream; keep-alive requests one after another on one connection.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers import wait_until

from stackwright.local.ports import free_port

MiB = 1 << 20

# A raw ASGI app behind the runtime's body limit (3 MiB): answers the body's size, sha256 and how many
# messages it came in.
APP = """
import hashlib, json
from stackwright.bench.baseline import app as baseline
from stackwright.runtime.limits import BodyLimitMiddleware


async def echo(scope, receive, send):
    if scope["type"] != "http":
        await baseline(scope, receive, send)  # the lifespan
        return
    digest, size, messages, more = hashlib.sha256(), 0, 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        digest.update(body)
        size += len(body)
        messages += 1
        more = message.get("more_body", False)
    out = json.dumps({"size": size, "sha256": digest.hexdigest(), "messages": messages}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})


app = BodyLimitMiddleware(echo, 3 * 1024 * 1024)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("echo")
    (folder / "echo.py").write_text(textwrap.dedent(APP))
    port = free_port()
    env = {**os.environ, "SERVICE_NAME": "echo", "SYSTEM_NAME": "test",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "stackwright.runtime.serve", "echo:app", "--port", str(port),
                             "--log-level", "warning"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.post(url, content=b"").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout_s=60)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_large_streamed_body_arrives_whole_and_in_order(server: str) -> None:
    data = os.urandom(2 * MiB + 12345)
    with httpx.Client(base_url=server, timeout=60) as client:
        for size in (MiB, 4096):  # big pieces (one socket read per message), then many small ones per read
            got = client.post("/", content=pieces(data, size)).json()  # chunked: no Content-Length
            assert got["size"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest()
            assert got["messages"] >= 2  # streamed, not buffered whole
        # Keep-alive: the connection's next request starts from an empty body.
        again = client.post("/", content=b"second").json()
        assert again["sha256"] == hashlib.sha256(b"second").hexdigest()


def test_one_byte_pieces(server: str) -> None:
    data = bytes(range(256)) * 8
    got = httpx.post(server, content=pieces(data, 1), timeout=60).json()
    assert got["size"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest()


def test_over_the_limit_mid_stream_is_413_problem_json(server: str) -> None:
    resp = httpx.post(server, content=pieces(os.urandom(5 * MiB), 256 * 1024), timeout=60)
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["status"] == 413
