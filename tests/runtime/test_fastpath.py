"""Fast routes answer exactly like the FastAPI route they document: same statuses, same problem+json bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header
from pydantic import BaseModel, Field
from tests.helpers import AUD, ISS

from stackwright.local.idp import DevIdP
from stackwright.runtime import FastRequest, Problem, Reply, Service, Settings


class Ballot(BaseModel):
    option: str = Field(min_length=1, max_length=10)


def _service(jwks_url: str) -> Service:
    settings = Settings.from_env({"SERVICE_NAME": "fast", "SYSTEM_NAME": "test", "MAX_BODY_BYTES": "200",
                                  "JWKS_URL": jwks_url, "JWT_ISSUER": ISS, "JWT_AUDIENCE": AUD})
    svc = Service(settings=settings)

    @svc.fast_route("POST", "/boxes/{box}/ballots", status_code=202, body=Ballot, roles=("viewer",),
                    headers={"Idempotency-Key": 8})
    async def cast(req: FastRequest) -> Any:
        box = req.path_params["box"]
        if box == "missing":
            raise Problem(404, "no such box", box=box)
        if box == "down":
            raise ConnectionError("redis went away")
        if box == "bug":
            raise RuntimeError("a bug")
        assert req.principal is not None
        if req.header("idempotency-key"):
            return Reply({"replayed": True}, 200, {"Idempotent-Replayed": "true"})
        return {"box": box, "option": req.body.option, "by": req.principal.sub}

    @svc.fast_route("POST", "/boxes/{box}/keyed", body=Ballot, auth=True,
                    headers={"Idempotency-Key": Header(alias="Idempotency-Key", min_length=1, max_length=8,
                                                       pattern=r"^[a-z]+$")})
    async def keyed(req: FastRequest) -> dict[str, Any]:
        return {"key": req.header("idempotency-key"), "token": (req.authorization or "")[:7]}

    @svc.fast_route("GET", "/boxes/{box}")
    async def box(req: FastRequest) -> dict[str, str]:
        return {"box": req.path_params["box"]}

    return svc


def _documented_only(app: FastAPI) -> Any:
    """The same app served by FastAPI alone (the fast router skipped): what the fast path must equal."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return asgi


@pytest.fixture
async def clients(jwks_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    svc = _service(jwks_url)
    async with svc.app.router.lifespan_context(svc.app):
        fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://svc")
        # FastAPI re-raises a 500's exception after answering; the answer is what is compared.
        documented = httpx.ASGITransport(app=_documented_only(svc.app), raise_app_exceptions=False)
        slow = httpx.AsyncClient(transport=documented, base_url="http://svc")
        async with fast, slow:
            yield fast, slow


def _cases(idp: DevIdP) -> list[tuple[str, str, dict[str, Any]]]:
    viewer = {"Authorization": f"Bearer {idp.mint('v1', ['viewer'])}"}
    stranger = {"Authorization": f"Bearer {idp.mint('s1', [])}"}
    return [
        ("ok", "/boxes/b1/ballots", {"json": {"option": "yes"}, "headers": viewer}),
        ("replayed", "/boxes/b1/ballots", {"json": {"option": "yes"}, "headers": viewer | {"Idempotency-Key": "k"}}),
        ("no token", "/boxes/b1/ballots", {"json": {"option": "yes"}}),
        ("bad token", "/boxes/b1/ballots", {"json": {"option": "yes"}, "headers": {"Authorization": "Bearer x.y.z"}}),
        ("no role", "/boxes/b1/ballots", {"json": {"option": "yes"}, "headers": stranger}),
        ("long header", "/boxes/b1/ballots",
         {"json": {"option": "yes"}, "headers": viewer | {"Idempotency-Key": "123456789"}}),
        ("not json", "/boxes/b1/ballots",
         {"content": b"{nope", "headers": viewer | {"content-type": "application/json"}}),
        ("wrong type", "/boxes/b1/ballots", {"json": {"option": 7}, "headers": viewer}),
        ("too long field", "/boxes/b1/ballots", {"json": {"option": "x" * 11}, "headers": viewer}),
        ("empty body", "/boxes/b1/ballots", {"headers": viewer}),
        ("form body", "/boxes/b1/ballots", {"content": b"option=yes",
                                            "headers": viewer | {"content-type": "application/x-www-form-urlencoded"}}),
        ("too large", "/boxes/b1/ballots", {"json": {"option": "y" * 300}, "headers": viewer}),
        ("problem", "/boxes/missing/ballots", {"json": {"option": "yes"}, "headers": viewer}),
        ("dependency down", "/boxes/down/ballots", {"json": {"option": "yes"}, "headers": viewer}),
        ("bug", "/boxes/bug/ballots", {"json": {"option": "yes"}, "headers": viewer}),
    ]


EXPECTED = {"ok": 202, "replayed": 200, "no token": 401, "bad token": 401, "no role": 403, "long header": 422,
            "not json": 400, "wrong type": 422, "too long field": 422, "empty body": 422, "form body": 422,
            "too large": 413, "problem": 404, "dependency down": 503, "bug": 500}


async def test_fast_route_answers_like_its_fastapi_route(clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                         idp: DevIdP) -> None:
    fast, slow = clients
    for name, path, kwargs in _cases(idp):
        a = await fast.post(path, **kwargs)
        b = await slow.post(path, **kwargs)
        assert a.status_code == EXPECTED[name], (name, a.status_code, a.text)
        assert b.status_code == a.status_code, (name, "FastAPI answered", b.status_code, b.text)
        assert a.headers["content-type"] == b.headers["content-type"], name
        body_a, body_b = a.json(), b.json()
        if a.status_code >= 400:
            # Same problem; FastAPI's validation messages may word the same error differently.
            assert {k: body_a[k] for k in ("type", "title", "status")} == \
                   {k: body_b[k] for k in ("type", "title", "status")}, name
            assert body_a.get("instance") == path, name
            if "errors" in body_b:
                assert [e["loc"] for e in body_a["errors"]] == [e["loc"] for e in body_b["errors"]], name
        else:
            assert body_a == body_b, name
    ok = await fast.post("/boxes/b1/ballots", json={"option": "yes"}, headers=_cases(idp)[0][2]["headers"])
    assert ok.json() == {"box": "b1", "option": "yes", "by": "v1"}
    replay = await fast.post(*_cases(idp)[1][1:2], **_cases(idp)[1][2])
    assert replay.headers["idempotent-replayed"] == "true"
    unauthorized = await fast.post("/boxes/b1/ballots", json={"option": "yes"})
    assert unauthorized.headers["www-authenticate"].startswith("Bearer")
    down = await fast.post("/boxes/down/ballots", json={"option": "yes"}, headers=_cases(idp)[0][2]["headers"])
    assert down.headers["retry-after"] == "1"


async def test_streamed_body_over_the_limit_is_413(clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                    idp: DevIdP) -> None:
    fast, _ = clients

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b'{"option": "' + b"z" * 30

    viewer = {"Authorization": f"Bearer {idp.mint('v1', ['viewer'])}", "content-type": "application/json"}
    resp = await fast.post("/boxes/b1/ballots", content=chunks(), headers=viewer)
    assert resp.status_code == 413 and resp.headers["content-type"] == "application/problem+json"


async def test_other_methods_and_paths_fall_through_to_fastapi(
        clients: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    fast, _ = clients
    assert (await fast.get("/boxes/b2")).json() == {"box": "b2"}
    assert (await fast.get("/boxes/b2/ballots")).status_code == 405
    assert (await fast.get("/boxes/b2/ballots/x")).status_code == 404
    assert (await fast.get("/healthz")).status_code == 200


async def test_fast_routes_are_counted_and_documented(clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                      idp: DevIdP) -> None:
    fast, _ = clients
    await fast.get("/boxes/b3")
    await fast.post("/boxes/b3/ballots", json={"option": "no"})
    metrics = (await fast.get("/metrics")).text
    assert 'starlette_requests_total{app_name="fast",method="GET",path="/boxes/{box}",status_code="200"}' in metrics
    assert 'path="/boxes/{box}/ballots",status_code="401"' in metrics
    op = (await fast.get("/openapi.json")).json()["paths"]["/boxes/{box}/ballots"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Ballot")
    params = {(p["in"], p["name"]) for p in op["parameters"]}
    assert params == {("path", "box"), ("header", "idempotency-key")}
    assert "202" in op["responses"]



async def test_a_required_constrained_header_is_checked_and_documented_like_fastapi(
        clients: tuple[httpx.AsyncClient, httpx.AsyncClient], idp: DevIdP) -> None:
    fast, slow = clients
    auth = {"Authorization": f"Bearer {idp.mint('v1', [])}"}
    cases = {"ok": ({"Idempotency-Key": "abc"}, 200), "missing": ({}, 422),
             "pattern": ({"Idempotency-Key": "ab c"}, 422), "too long": ({"Idempotency-Key": "abcdefghi"}, 422)}
    for name, (headers, status) in cases.items():
        a = await fast.post("/boxes/b1/keyed", json={"option": "yes"}, headers=auth | headers)
        b = await slow.post("/boxes/b1/keyed", json={"option": "yes"}, headers=auth | headers)
        assert a.status_code == b.status_code == status, (name, a.text, b.text)
        if status == 422:
            assert [e["loc"] for e in a.json()["errors"]] == [e["loc"] for e in b.json()["errors"]], name
        else:
            assert a.json() == b.json() == {"key": "abc", "token": "Bearer "}
    op = (await fast.get("/openapi.json")).json()["paths"]["/boxes/{box}/keyed"]["post"]
    header = next(p for p in op["parameters"] if p["in"] == "header")
    assert header["name"] == "Idempotency-Key" and header["required"] is True
    assert header["schema"]["pattern"] == "^[a-z]+$" and header["schema"]["maxLength"] == 8
