"""A WebSocket route does not raise the ALB's idle timeout (a setting of the whole load balancer): the
server pings each connection more often than that timeout, so a quiet stream stays open through it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from stackwright.contract import ALB_IDLE_TIMEOUT_S
from stackwright.local.ports import free_port
from stackwright.render import build_manifests
from stackwright.runtime.serve import parse_args
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]

WS_APP = '''
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute


async def quiet(ws):
    await ws.accept()
    await ws.receive_text()  # never sends a message: only the server's pings keep the connection busy


app = Starlette(routes=[WebSocketRoute("/ws", quiet)])
'''


def test_websocket_routes_keep_the_load_balancers_idle_timeout() -> None:
    system = load_system("voting", root=ROOT)
    system.services["results"].routes[0].websocket = True
    for env in system.environments:
        objs = build_manifests(system, system.regions[0].name, env)
        ingresses = [o for o in objs if o["kind"] == "Ingress"]
        assert ingresses
        for ingress in ingresses:
            attributes = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-attributes"]
            assert f"idle_timeout.timeout_seconds={ALB_IDLE_TIMEOUT_S}" in attributes


def test_the_servers_ping_interval_is_below_the_idle_timeout() -> None:
    assert parse_args(["app:app"]).ws_ping < ALB_IDLE_TIMEOUT_S
    assert parse_args(["app:app", "--ws-ping", "5"]).ws_ping == 5


def test_a_quiet_websocket_gets_pings_from_the_server(tmp_path: Path) -> None:
    (tmp_path / "wsapp.py").write_text(WS_APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stackwright.runtime.serve", "wsapp:app", "--port", str(port),
                             "--ws-ping", "0.3", "--log-level", "warning"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.1)
        with sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1024)
            assert head.startswith(b"HTTP/1.1 101")
            rest = head.split(b"\r\n\r\n", 1)[1]
            while len(rest) < 2:
                rest += sock.recv(1024)
            assert rest[0] == 0x89, f"expected a ping frame (0x89), got {rest[:2]!r}"  # FIN + opcode 9
    finally:
        proc.terminate()
        proc.wait(timeout=10)
