"""``python -m stackwright.runtime.serve --platform-port``: one server, two ports, each serving its own paths.

A real process on free ports (the runner starts services the same way): the application port answers the
platform's endpoints 404 unless PUBLISHED_PLATFORM_PATHS names them, the platform port serves only them,
WebSocket upgrades follow the same split, and SIGTERM stops both ports.
"""

from __future__ import annotations

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
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from stackwright.local.ports import free_port

APP = """
from fastapi import WebSocket
from stackwright.runtime import Service

svc = Service("demo")
app = svc.app


@app.get("/hello")
async def hello() -> dict:
    return {"hello": "world"}


@app.websocket("/ws")
async def ws(socket: WebSocket) -> None:
    await socket.accept()
    await socket.send_text("hi")
    await socket.close()
"""


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("app")
    (folder / "app.py").write_text(textwrap.dedent(APP))
    app_port, platform_port = free_port(), free_port()
    env = {**os.environ, "SERVICE_NAME": "demo", "SYSTEM_NAME": "test", "PUBLISHED_PLATFORM_PATHS": "/openapi.json",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "stackwright.runtime.serve", "app:app", "--port", str(app_port),
                             "--platform-port", str(platform_port), "--log-level", "warning"],
                            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app, platform = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{platform_port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{platform}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout_s=60)
        yield app, platform
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal it handled once it has shut down (the drain ran): killed by SIGTERM.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        for base in (app, platform):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{base}/hello")


def test_each_port_serves_its_own_paths(ports: tuple[str, str]) -> None:
    app, platform = ports
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{app}/hello").json() == {"hello": "world"}
        for path in ("/metrics", "/readyz", "/healthz", "/docs", "/redoc", "/%6detrics"):
            hidden = client.get(f"{app}{path}")
            assert (path, hidden.status_code, hidden.headers["content-type"]) == \
                (path, 404, "application/problem+json")
        # Published by the spec (PUBLISHED_PLATFORM_PATHS): served on both ports.
        assert client.get(f"{app}/openapi.json").json()["paths"].keys() == {"/hello"}
        assert client.get(f"{platform}/openapi.json").status_code == 200
        assert 'app_name="demo"' in client.get(f"{platform}/metrics").text
        assert client.get(f"{platform}/healthz").json() == {"status": "ok", "service": "demo"}
        assert client.get(f"{platform}/hello").status_code == 404


def test_websockets_follow_the_split(ports: tuple[str, str]) -> None:
    app, platform = ports
    with connect(app.replace("http://", "ws://") + "/ws") as ws:
        assert ws.recv(timeout=10) == "hi"
    with pytest.raises(InvalidStatus) as refused:
        connect(platform.replace("http://", "ws://") + "/ws", open_timeout=10)
    assert refused.value.response.status_code == 403
