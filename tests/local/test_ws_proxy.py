"""WebSocket proxying through the local edge gateway, with a real gateway over a real upstream app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from tests.helpers import AUD, ISS, edge_config, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from stackwright.local.gateway import build_admin_app, build_app
from stackwright.local.idp import DevIdP
from stackwright.local.ports import free_port
from stackwright.local.routing import EdgeRoute
from stackwright.local.ws_proxy import MAX_MESSAGE, split_access_token

pytestmark = pytest.mark.integration

# Disconnects the upstream saw, by the session id the test put in the query string: (code, reason).
DISCONNECTS: dict[str, tuple[int, str]] = {}


def _upstream() -> Starlette:
    async def echo(ws: WebSocket) -> None:
        if ws.url.path == "/ws/open/refuse":
            await ws.close(1008)  # before accept: a 403 handshake to the gateway
            return
        offered = ws.scope.get("subprotocols") or []
        await ws.accept(subprotocol="echo.v2" if "echo.v2" in offered else None)
        # First message: what the upstream saw of the handshake.
        await ws.send_text(json.dumps({"authorization": ws.headers.get("authorization"), "query": ws.url.query,
                                       "subprotocol": "echo.v2" if "echo.v2" in offered else None,
                                       "xff": ws.headers.get("x-forwarded-for")}))
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                DISCONNECTS[ws.query_params.get("id", "")] = (message.get("code", 1005), message.get("reason", ""))
                return
            if message.get("text") == "close-4000":
                await ws.close(4000, "bye now")
                return
            if message.get("text") == "send-oversize":
                await ws.send_bytes(b"x" * (MAX_MESSAGE + 1))
                continue
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])

    async def plain(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path})

    return Starlette(routes=[WebSocketRoute("/ws/{rest:path}", echo), Route("/{path:path}", plain)])


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevIdP]]:
    key = tmp_path_factory.mktemp("ws-edge") / "key.pem"
    with serve(_upstream()) as upstream:
        port = free_port()
        config = edge_config(
            port, key,
            rate_limits={"tight": {"requests_per_second": 0.1, "burst": 2, "key": "sub"},
                         "open": {"requests_per_second": 1000, "burst": 1000, "key": "ip"}},
            routes=[
                EdgeRoute("/public", "up").to_dict(),
                EdgeRoute("/ws/open", "up", websocket=True).to_dict(),
                EdgeRoute("/ws/private", "up", auth="required", websocket=True).to_dict(),
                EdgeRoute("/ws/keyed", "up", auth="required", api_key_prefixes=("sk_",), websocket=True).to_dict(),
                EdgeRoute("/ws/admin", "up", auth="required", roles=("admin",), websocket=True).to_dict(),
                EdgeRoute("/ws/limited", "up", auth="required", rate_limit="tight", websocket=True).to_dict(),
                EdgeRoute("/ws/plain", "up").to_dict(),  # a route without websocket: true
                EdgeRoute("/ws/down", "gone", websocket=True).to_dict(),
                EdgeRoute("/ws/capped", "up", websocket=True, max_connections=2).to_dict(),
                EdgeRoute("/ws/idle", "up", websocket=True, idle_timeout_s=1).to_dict(),
            ],
            upstreams={"up": [upstream], "gone": [f"http://127.0.0.1:{free_port()}"]})
        with serve(build_app(config), port=port) as base:
            yield base.replace("http://", "ws://"), DevIdP(Path(key), issuer=ISS, audience=AUD)


def _hello(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=5))


def _refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info, connect(url, open_timeout=5, **kwargs):
        pass
    return info.value.response.status_code


def _wait_for(sid: str) -> tuple[int, str]:
    deadline = time.monotonic() + 5
    while sid not in DISCONNECTS:
        assert time.monotonic() < deadline, f"upstream never saw {sid} disconnect"
        time.sleep(0.02)
    return DISCONNECTS[sid]


def test_split_access_token() -> None:
    assert split_access_token(b"a=1&access_token=abc%2Bd&b=x%20y") == ("abc+d", b"a=1&b=x%20y")
    assert split_access_token(b"") == (None, b"")
    assert split_access_token(b"access_token=t") == ("t", b"")


def test_edge_route_carries_websocket_flag() -> None:
    assert EdgeRoute.from_dict(EdgeRoute("/ws", "s", websocket=True).to_dict()).websocket is True
    assert EdgeRoute.from_dict({"pattern": "/x", "service": "s"}).websocket is False


def test_echoes_text_and_bytes(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/open?id=echo&x=1") as ws:
        hello = _hello(ws)
        assert hello["query"] == "id=echo&x=1" and hello["authorization"] is None and hello["xff"] == "127.0.0.1"
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"
        ws.send("héllo ünïcode")
        assert ws.recv(timeout=5) == "héllo ünïcode"
        big = b"x" * MAX_MESSAGE  # exactly the limit passes both ways
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_access_token_query_becomes_bearer_header(edge: tuple[str, DevIdP]) -> None:
    base, idp = edge
    token = idp.mint("alice", [])
    with connect(f"{base}/ws/private?id=tok&access_token={token}&lang=en") as ws:
        hello = _hello(ws)
        assert hello["authorization"] == f"Bearer {token}"
        assert hello["query"] == "id=tok&lang=en"  # the token is not forwarded in the URL
    with connect(f"{base}/ws/private", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert _hello(ws)["authorization"] == f"Bearer {token}"


def test_refusals_are_403_handshakes(edge: tuple[str, DevIdP]) -> None:
    base, idp = edge
    assert _refused(f"{base}/ws/private") == 403  # no token
    assert _refused(f"{base}/ws/private?access_token=garbage") == 403
    assert _refused(f"{base}/ws/private?access_token={idp.mint('u', [], ttl_s=-100)}") == 403  # expired
    assert _refused(f"{base}/ws/admin?access_token={idp.mint('u', ['viewer'])}") == 403  # missing role
    with connect(f"{base}/ws/admin?access_token={idp.mint('boss', ['admin'])}") as ws:
        assert _hello(ws)["authorization"].startswith("Bearer ")
    assert _refused(f"{base}/ws/plain") == 403  # route without websocket: true
    assert _refused(f"{base}/public") == 403
    assert _refused(f"{base}/nothing-here") == 403


def test_api_keys_of_the_route_pass_through_tokens_are_still_verified(edge: tuple[str, DevIdP]) -> None:
    # The service verifies its own API keys: the edge forwards them untouched (here the echo upstream accepts
    # anything, so what reaches it is what the edge let through).
    base, idp = edge
    with connect(f"{base}/ws/keyed?access_token=sk_live_123") as ws:
        assert _hello(ws)["authorization"] == "Bearer sk_live_123"
    with connect(f"{base}/ws/keyed", additional_headers={"Authorization": "Bearer sk_x"}) as ws:
        assert _hello(ws)["authorization"] == "Bearer sk_x"
    with connect(f"{base}/ws/keyed?access_token={idp.mint('alice', [])}") as ws:
        assert _hello(ws)["authorization"].startswith("Bearer ey")
    assert _refused(f"{base}/ws/keyed") == 403  # no credential
    assert _refused(f"{base}/ws/keyed?access_token=garbage") == 403  # not a key, not a valid token
    assert _refused(f"{base}/ws/keyed?access_token={idp.mint('u', [], ttl_s=-100)}") == 403  # expired token
    assert _refused(f"{base}/ws/private?access_token=sk_live_123") == 403  # a route without api_key_prefixes
    assert EdgeRoute.from_dict(EdgeRoute("/k", "s", api_key_prefixes=("sk_",)).to_dict()).api_key_prefixes == ("sk_",)


def test_rate_limit_one_token_per_connection(edge: tuple[str, DevIdP]) -> None:
    base, idp = edge
    url = f"{base}/ws/limited?access_token={idp.mint('greedy', [])}"
    for _ in range(2):  # burst 2
        with connect(url) as ws:
            _hello(ws)
    assert _refused(url) == 403
    with connect(f"{base}/ws/limited?access_token={idp.mint('polite', [])}") as ws:  # others unaffected
        _hello(ws)


def test_subprotocol_negotiated_end_to_end(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/open", subprotocols=["echo.v1", "echo.v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "echo.v2"
        assert _hello(ws)["subprotocol"] == "echo.v2"
    with connect(f"{base}/ws/open") as ws:
        assert ws.subprotocol is None


def test_upstream_close_code_and_reason_reach_client(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/open") as ws:
        _hello(ws)
        ws.send("close-4000")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (4000, "bye now")


def test_client_close_reaches_upstream(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/open?id=leaving") as ws:
        _hello(ws)
        ws.close(4001, "done here")
    assert _wait_for("leaving") == (4001, "done here")
    with connect(f"{base}/ws/open?id=plain-close") as ws:
        _hello(ws)
    assert _wait_for("plain-close") == (1000, "")


def test_upstream_down_is_refused_and_http_still_works(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    assert _refused(f"{base}/ws/down") == 403
    assert _refused(f"{base}/ws/open/refuse") == 403  # the upstream refused its handshake
    http = base.replace("ws://", "http://")
    assert httpx.get(f"{http}/public").json() == {"path": "/public"}
    with connect(f"{base}/ws/open") as ws:
        _hello(ws)


def test_oversize_client_message_closes_with_1009(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/open?id=oversize") as ws:
        _hello(ws)
        ws.send(b"x" * (MAX_MESSAGE + 1))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1009
    assert _wait_for("oversize")[0] == 1009
    with connect(f"{base}/ws/open?id=oversize-up") as ws:  # the gateway's upstream client enforces it too
        _hello(ws)
        ws.send("send-oversize")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1009


def test_sessions_are_counted_in_edge_metrics(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/open") as ws:
        _hello(ws)
    _refused(f"{base}/ws/plain")
    with serve(build_admin_app()) as admin:  # the gateway's own metrics: its local-only port
        text = httpx.get(f"{admin}/metrics").text
    assert 'starlette_requests_total{app_name="edge",method="GET",path="/ws/open",status_code="101"}' in text
    assert 'starlette_requests_total{app_name="edge",method="GET",path="__unmatched__",status_code="403"}' in text


def test_runner_passes_the_websocket_flag_to_the_gateway(tmp_path: Path) -> None:
    from stackwright.local.runner import LocalSystem, UpOptions
    from stackwright.spec import load_system

    system = load_system("voting")
    vote = system.services["vote"]
    ws_route = vote.routes[0].model_copy(update={"websocket": True})
    vote = vote.model_copy(update={"routes": [ws_route, *vote.routes[1:]]})
    system = system.model_copy(update={"services": {**system.services, "vote": vote}})
    routes = LocalSystem(system, UpOptions(state_root=tmp_path), report=lambda _: None).gateway_config()["routes"]
    flags = {(r["service"], r["pattern"]): r["websocket"] for r in routes}
    assert flags.pop(("vote", ws_route.path)) is True
    assert not any(flags.values())


def test_connection_limit_per_replica_refuses_one_more(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/capped?id=c1") as first, connect(f"{base}/ws/capped?id=c2") as second:
        _hello(first), _hello(second)
        assert _refused(f"{base}/ws/capped") == 403  # the third session on this replica
        with connect(f"{base}/ws/open") as other:  # other routes are not counted against it
            _hello(other)
    _wait_for("c1"), _wait_for("c2")
    with connect(f"{base}/ws/capped") as again:  # closed sessions free their places
        _hello(again)


def test_idle_session_is_closed_with_1001_but_a_talking_one_stays(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with connect(f"{base}/ws/idle?id=talker") as ws:
        _hello(ws)
        for _ in range(6):  # 1.8 s in all, longer than the 1 s timeout, but never 1 s quiet
            time.sleep(0.3)
            ws.send("still here")
            assert ws.recv(timeout=5) == "still here"
    with connect(f"{base}/ws/idle?id=silent") as ws:
        _hello(ws)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001 and 0.9 <= time.monotonic() - started < 3
    assert _wait_for("silent")[0] == 1001


def test_runner_passes_websocket_limits_to_the_gateway(tmp_path: Path) -> None:
    from stackwright.local.runner import LocalSystem, UpOptions
    from stackwright.spec import load_system

    system = load_system("voting")
    vote = system.services["vote"]
    ws_route = vote.routes[0].model_copy(update={"websocket": True, "max_connections": 7, "idle_timeout_s": 30})
    vote = vote.model_copy(update={"routes": [ws_route, *vote.routes[1:]]})
    system = system.model_copy(update={"services": {**system.services, "vote": vote}})
    routes = LocalSystem(system, UpOptions(state_root=tmp_path), report=lambda _: None).gateway_config()["routes"]
    route = EdgeRoute.from_dict(next(r for r in routes if r["pattern"] == ws_route.path))
    assert (route.max_connections, route.idle_timeout_s) == (7, 30)


def test_a_handshake_over_the_albs_header_limit_gets_its_400(edge: tuple[str, DevIdP]) -> None:
    """Headers of 7 KiB each (under the 8 KiB line the WebSocket server reads at most), 70 KiB in all."""
    base, _ = edge
    many = {f"x-part-{i}": "a" * (7 * 1024) for i in range(10)}
    assert _refused(f"{base}/ws/open", additional_headers=many) == 400
    with connect(f"{base}/ws/open", additional_headers={"x-fine": "a" * (7 * 1024)}) as ws:
        _hello(ws)
