"""The local edge gateway: routing, JWT checks, roles, rate limits and body limits, with real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from tests.helpers import AUD, ISS, edge_config, serve

from stackwright.local.gateway import build_admin_app, build_app
from stackwright.local.idp import DevIdP
from stackwright.local.ports import free_port
from stackwright.local.ratelimit import TokenBuckets, retry_after_header
from stackwright.local.routing import EdgeRoute, RouteTable
from stackwright.runtime import FastRequest, Service, Settings
from stackwright.runtime.auth import AuthError

pytestmark = pytest.mark.integration


def test_route_table_prefers_specific_routes() -> None:
    table = RouteTable([
        EdgeRoute("/", "web", frozenset({"GET"})),
        EdgeRoute("/polls", "vote", frozenset({"POST"})),
        EdgeRoute("/polls", "results", frozenset({"GET"})),
        EdgeRoute("/polls/{id}/votes", "vote", frozenset({"POST"})),
        EdgeRoute("/polls/{id}/results", "results", frozenset({"GET"})),
        EdgeRoute("/auth/me", "auth"),
    ])
    assert table.match("/polls/abc/votes", "POST")[0].service == "vote"  # type: ignore[union-attr]
    assert table.match("/polls/abc/results", "GET")[0].service == "results"  # type: ignore[union-attr]
    assert table.match("/polls", "GET")[0].service == "results"  # type: ignore[union-attr]
    assert table.match("/polls", "POST")[0].service == "vote"  # type: ignore[union-attr]
    assert table.match("/auth/me/extra", "DELETE")[0].service == "auth"  # type: ignore[union-attr]
    assert table.match("/index.html", "GET")[0].service == "web"  # type: ignore[union-attr]
    # Literal routes are prefixes (as ALB Prefix paths are): GET below /polls belongs to results.
    assert table.match("/polls/abc/votes", "GET")[0].service == "results"  # type: ignore[union-attr]
    assert RouteTable([EdgeRoute("/x/{id}", "x", frozenset({"POST"}))]).match("/x/1", "GET") == (None, 405)
    assert RouteTable([EdgeRoute("/api", "x")]).match("/apix", "GET") == (None, 404)
    assert table.allowed("/polls") == ["GET", "HEAD", "POST"]


def test_token_bucket() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a", now=0.0)
    assert wait == pytest.approx(0.5)
    assert buckets.take("b", now=0.0) == 0.0  # other clients are unaffected
    assert buckets.take("a", now=0.6) == 0.0  # refilled
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"


def _upstream() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"path": request.url.path, "query": request.url.query, "len": len(body),
                             "auth": request.headers.get("authorization", "")[:7],
                             "xff": request.headers.get("x-forwarded-for")})

    async def stream(request: Request) -> StreamingResponse:
        async def gen() -> Any:
            for i in range(3):
                yield f"data: {i}\n\n".encode()

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/stream", stream), Route("/{path:path}", echo, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevIdP]]:
    key = tmp_path_factory.mktemp("edge") / "key.pem"
    with serve(_upstream()) as upstream:
        port = free_port()
        config = edge_config(
            port, key, max_body=1000,
            rate_limits={"tight": {"requests_per_second": 1, "burst": 2, "key": "sub"},
                         "open": {"requests_per_second": 1000, "burst": 1000, "key": "ip"}},
            routes=[
                EdgeRoute("/public", "up").to_dict(),
                EdgeRoute("/stream", "up").to_dict(),
                EdgeRoute("/private", "up", auth="required").to_dict(),
                EdgeRoute("/admin", "up", auth="required", roles=("admin",)).to_dict(),
                EdgeRoute("/limited", "up", auth="required", rate_limit="tight").to_dict(),
                EdgeRoute("/small", "up", frozenset({"POST"}), max_body=10).to_dict(),
                EdgeRoute("/down", "gone").to_dict(),
            ],
            upstreams={"up": [upstream], "gone": [f"http://127.0.0.1:{free_port()}"]})
        with serve(build_app(config), port=port) as base:
            yield base, DevIdP(Path(key), issuer=ISS, audience=AUD)


def _problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    return resp.json()


def test_routes_and_forwards(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    resp = httpx.get(f"{base}/public/x?y=1")
    assert resp.status_code == 200
    assert resp.json() == {"path": "/public/x", "query": "y=1", "len": 0, "auth": "", "xff": "127.0.0.1"}
    _problem(httpx.get(f"{base}/nothing-here"), 404)
    _problem(httpx.get(f"{base}/small"), 405)
    assert _problem(httpx.get(f"{base}/down"), 502)["detail"] == "gone is unavailable"
    # The gateway's own metrics are on its local-only admin app, not on the public edge (production has none).
    _problem(httpx.get(f"{base}/_edge/metrics"), 404)
    with serve(build_admin_app()) as admin:
        assert httpx.get(f"{admin}/healthz").json()["status"] == "ok"
        metrics = httpx.get(f"{admin}/metrics").text
    assert 'app_name="edge",method="GET",path="/public",status_code="200"' in metrics
    assert 'path="/down",status_code="502"' in metrics


def test_streams_server_sent_events(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    with httpx.stream("GET", f"{base}/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert "".join(resp.iter_text()) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_auth_and_roles(edge: tuple[str, DevIdP]) -> None:
    base, idp = edge
    assert "missing bearer token" in _problem(httpx.get(f"{base}/private"), 401)["detail"]
    assert httpx.get(f"{base}/private", headers={"authorization": f"Bearer {idp.mint('u', [])}"}).status_code == 200
    viewer = {"authorization": f"Bearer {idp.mint('u', ['viewer'])}"}
    assert "admin" in _problem(httpx.get(f"{base}/admin", headers=viewer), 403)["detail"]
    admin = {"authorization": f"Bearer {idp.mint('boss', ['admin'])}"}
    assert httpx.get(f"{base}/admin", headers=admin).status_code == 200
    expired = {"authorization": f"Bearer {idp.mint('u', [], ttl_s=-100)}"}
    assert "expired" in _problem(httpx.get(f"{base}/private", headers=expired), 401)["detail"]


def test_rate_limit_per_client(edge: tuple[str, DevIdP]) -> None:
    base, idp = edge
    greedy = {"authorization": f"Bearer {idp.mint('greedy', [])}"}
    statuses = [httpx.get(f"{base}/limited", headers=greedy).status_code for _ in range(4)]
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]
    limited = httpx.get(f"{base}/limited", headers=greedy)
    _problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    polite = {"authorization": f"Bearer {idp.mint('polite', [])}"}
    assert httpx.get(f"{base}/limited", headers=polite).status_code == 200  # others unaffected


def test_body_limits(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    assert httpx.post(f"{base}/small", content=b"123456789").status_code == 200
    _problem(httpx.post(f"{base}/small", content=b"x" * 11), 413)
    _problem(httpx.post(f"{base}/public", content=b"x" * 1001), 413)

    def chunks() -> Any:  # no Content-Length: the limit applies while streaming
        for _ in range(20):
            yield b"x" * 100

    _problem(httpx.post(f"{base}/public", content=chunks()), 413)


def test_dev_idp_endpoints(edge: tuple[str, DevIdP]) -> None:
    base, _ = edge
    jwks = httpx.get(f"{base}/auth/.well-known/jwks.json").json()
    assert jwks["keys"][0]["kty"] == "RSA" and jwks["keys"][0]["alg"] == "RS256"
    minted = httpx.post(f"{base}/auth/dev/token", json={"sub": "carol", "roles": ["viewer"]})
    assert minted.status_code == 200 and minted.json()["token_type"] == "Bearer"
    assert httpx.get(f"{base}/private", headers={"authorization": f"Bearer {minted.json()['access_token']}"}
                     ).status_code == 200
    _problem(httpx.post(f"{base}/auth/dev/token", content=b"{"), 400)
    _problem(httpx.post(f"{base}/auth/dev/token", json={"sub": ""}), 422)
    _problem(httpx.post(f"{base}/auth/dev/token", json={"sub": "x", "roles": "admin"}), 422)
    _problem(httpx.post(f"{base}/auth/dev/token", json=[1, 2]), 422)
    # A claim beside the fields was dropped without a word (the token lacked it): refused, and 'claims' carries it.
    assert "'claims'" in _problem(httpx.post(f"{base}/auth/dev/token", json={"sub": "x", "tenant_id": "t1"}),
                                  422)["detail"]
    _problem(httpx.post(f"{base}/auth/dev/token", json={"sub": "x", "claims": {"exp": 1}}), 422)
    _problem(httpx.post(f"{base}/auth/dev/token", json={"sub": "x", "claims": {"t": 1.5}}), 422)
    with_claim = httpx.post(f"{base}/auth/dev/token", json={"sub": "x", "claims": {"tenant_id": "t1"}})
    assert jwt.decode(with_claim.json()["access_token"], options={"verify_signature": False})["tenant_id"] == "t1"


def _items_service() -> Any:
    """A runtime service with GET and POST on one path as two routes (as FastAPI declares them)."""
    svc = Service(settings=Settings.from_env({"SERVICE_NAME": "items", "SYSTEM_NAME": "test"}))

    @svc.app.post("/items", status_code=201)
    async def create() -> dict:
        return {"created": True}

    @svc.app.get("/items")
    async def list_items() -> dict:
        return {"items": []}

    @svc.fast_route("POST", "/items/{item_id}/likes", status_code=202)
    async def like(req: FastRequest) -> dict:
        return {"liked": req.path_params["item_id"]}

    @svc.app.get("/items/{item_id}/likes")
    async def likes(item_id: str) -> dict:
        return {"likes": 0}

    return svc.app


@pytest.fixture(scope="module")
def items_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(edge URL, service URL): the gateway in front of a runtime service, with routes declared like the specs'
    (one without methods, passed through; two on one path with a method each)."""
    key = tmp_path_factory.mktemp("items-edge") / "key.pem"
    with serve(_items_service()) as upstream:
        port = free_port()
        config = edge_config(
            port, key, rate_limits={"open": {"requests_per_second": 1000, "burst": 1000, "key": "ip"}},
            routes=[EdgeRoute("/items", "items").to_dict(),
                    EdgeRoute("/polls", "items", frozenset({"POST"})).to_dict(),
                    EdgeRoute("/polls", "items", frozenset({"GET"})).to_dict()],
            upstreams={"items": [upstream]})
        with serve(build_app(config), port=port) as base:
            yield base, upstream


def test_a_proxied_response_carries_one_date_and_server_header(items_edge: tuple[str, str]) -> None:
    base, upstream = items_edge
    direct = httpx.get(f"{upstream}/items")
    assert direct.headers.get_list("date") and direct.headers.get_list("server")  # the upstream sets both
    for resp in (httpx.get(f"{base}/items"), httpx.post(f"{base}/items"), httpx.delete(f"{base}/items")):
        assert len(resp.headers.get_list("date")) == 1, resp.headers
        assert len(resp.headers.get_list("server")) <= 1, resp.headers
        email_date = resp.headers["date"]
        assert email_date.endswith(" GMT") and "," not in email_date.split(",", 1)[1]


def test_405_allow_lists_every_method_of_the_path(items_edge: tuple[str, str]) -> None:
    base, upstream = items_edge
    for origin in (upstream, base):  # the service itself, then through the gateway (route without methods)
        resp = httpx.delete(f"{origin}/items")
        assert _problem(resp, 405)["status"] == 405
        assert resp.headers["allow"] == "GET, HEAD, POST", origin
        # A fast route and a FastAPI route on one path: the fast route's method is listed too.
        resp = httpx.put(f"{origin}/items/7/likes")
        _problem(resp, 405)
        assert resp.headers["allow"] == "GET, HEAD, POST", origin
    # Refused by the gateway itself: two edge routes on /polls, one method each.
    resp = httpx.delete(f"{base}/polls")
    _problem(resp, 405)
    assert resp.headers["allow"] == "GET, HEAD, POST"


def test_edge_signs_what_it_verified_and_drops_client_proofs(tmp_path: Path) -> None:
    """Behind an edge given a secret, an authenticated request carries the edge's proof for exactly that
    request; a proof sent by the client never reaches the service (it could only be a forgery or a replay)."""
    from stackwright.contract import EDGE_PROOF_HEADER
    from stackwright.runtime.auth import EdgeProof

    secret = "e" * 64

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"proof": request.headers.get(EDGE_PROOF_HEADER),
                             "token": request.headers.get("authorization", "").removeprefix("Bearer ")})

    upstream_app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])
    with serve(upstream_app) as upstream:
        port = free_port()
        config = edge_config(port, tmp_path / "key.pem", rate_limits={"open": {"requests_per_second": 1000,
                                                                                "burst": 1000, "key": "ip"}},
                             routes=[EdgeRoute("/public", "up").to_dict(),
                                     EdgeRoute("/private", "up", auth="required").to_dict()],
                             upstreams={"up": [upstream]}, edge_proof_secret=secret)
        with serve(build_app(config), port=port) as base:
            idp = DevIdP(tmp_path / "key.pem", issuer=ISS, audience=AUD)
            token = idp.mint("u", ["viewer"])
            forged = EdgeProof("f" * 64).sign("POST", b"/private/x", token)
            seen = httpx.post(f"{base}/private/x", headers={"authorization": f"Bearer {token}",
                                                            EDGE_PROOF_HEADER: forged}).json()
            assert seen["proof"] != forged and seen["token"] == token
            EdgeProof(secret).check(seen["proof"], "POST", b"/private/x", token)
            with pytest.raises(AuthError):  # bound to the request: not valid for another path
                EdgeProof(secret).check(seen["proof"], "POST", b"/private/y", token)
            # Not authenticated at the edge: no proof, and the client's own is dropped.
            public = httpx.get(f"{base}/public", headers={EDGE_PROOF_HEADER: forged}).json()
            assert public["proof"] is None
            # A token the edge refuses is never proxied, so never signed.
            assert httpx.post(f"{base}/private/x", headers={"authorization": "Bearer x.y.z"}).status_code == 401


def test_token_buckets_forget_full_buckets_as_new_clients_arrive() -> None:
    buckets = TokenBuckets(rate=5.0, burst=10, max_keys=1000)
    for _ in range(10):
        assert buckets.take("busy", now=0.0) == 0.0
    assert buckets.take("busy", now=0.0) > 0  # exhausted
    # 5,000 first-seen clients per second for 2 s: only the last ~full_after_s of them are kept.
    for i in range(10_000):
        buckets.take(f"new-{i}", now=0.1 + i / 5000)
        if i == 400:
            assert buckets.take("busy", now=0.1 + i / 5000) > 0  # still limited while it refills
    assert len(buckets._buckets) <= 10_000 // 2 + 2  # bounded by arrivals within full_after_s (2 s)
    # The cap holds even when nothing has refilled yet: the client idle longest is dropped first.
    capped = TokenBuckets(rate=0.001, burst=1, max_keys=100)
    for i in range(1000):
        capped.take(f"c{i}", now=0.0)
    assert len(capped._buckets) <= 100
    assert capped.take("c999", now=0.0) > 0  # the most recent client is still limited


def test_gateway_process_runs_on_the_services_event_loop(tmp_path: Path) -> None:
    """``python -m stackwright.local.gateway`` serves on uvloop, as every service does under uvicorn: it once ran
    on asyncio's stdlib loop (asyncio.run), whose Python-level selector and transports cost the edge a third of
    its busy time on the vote path."""
    import subprocess
    import sys
    import time

    port, admin_port = free_port(), free_port()
    config = edge_config(port, tmp_path / "key.pem", routes=[], upstreams={}, rate_limits={}, admin_port=admin_port,
                         default_rate_limit=None)
    (tmp_path / "gateway.json").write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-m", "stackwright.local.gateway", str(tmp_path / "gateway.json")])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{admin_port}/healthz").json()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)
        assert health == {"status": "ok", "event_loop": "uvloop"}
        assert httpx.get(f"http://127.0.0.1:{port}/anything").status_code == 404  # the public port serves too
    finally:
        proc.terminate()
        proc.wait(timeout=15)  # uvicorn re-raises SIGTERM once it has shut down: the status is -15
