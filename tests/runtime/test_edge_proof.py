"""The edge's proof that it verified a token (runtime.auth.EdgeProof), and the RS256 fast path of the verifier.

A service given the per-run secret accepts the gateway's proof instead of verifying the token's signature
again; everything else about the token still holds, and a request without a valid proof is verified in full
or refused. The fast RS256 path must reach the same verdict as PyJWT on every token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import Depends
from tests.helpers import AUD, ISS

from stackwright.contract import EDGE_PROOF_HEADER
from stackwright.local.idp import DevIdP
from stackwright.runtime import FastRequest, Principal, Service, Settings
from stackwright.runtime.auth import AuthError, EdgeProof, JWTVerifier

SECRET = "s" * 64
PATH = "/boxes/b1/ballots"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forged(idp: DevIdP, **claims: Any) -> str:
    """A token with the right header and claims and a signature that is not the IdP's."""
    now = int(time.time())
    body = {"iss": ISS, "aud": AUD, "sub": "mallory", "iat": now, "exp": now + 60, "roles": ["viewer"]} | claims
    return f"{_b64({'alg': 'RS256', 'kid': idp.kid, 'typ': 'JWT'})}.{_b64(body)}.{'A' * 342}"


# ---------------------------------------------------------------------- the proof itself


def test_proof_checks_out_for_the_request_it_was_made_for() -> None:
    proof = EdgeProof(SECRET)
    value = proof.sign("POST", PATH.encode(), "tok")
    proof.check(value, "POST", PATH.encode(), "tok")


@pytest.mark.parametrize(("method", "path", "token", "reason"), [
    ("GET", PATH, "tok", "does not match"),  # another method
    ("POST", "/boxes/b2/ballots", "tok", "does not match"),  # another path
    ("POST", PATH, "tok2", "does not match"),  # another token
])
def test_proof_replayed_on_another_request_is_refused(method: str, path: str, token: str, reason: str) -> None:
    value = EdgeProof(SECRET).sign("POST", PATH.encode(), "tok")
    with pytest.raises(AuthError, match=reason):
        EdgeProof(SECRET).check(value, method, path.encode(), token)


def test_proof_from_another_secret_stale_or_malformed_is_refused() -> None:
    ours = EdgeProof(SECRET)
    with pytest.raises(AuthError, match="does not match"):
        ours.check(EdgeProof("x" * 64).sign("POST", b"/p", "tok"), "POST", b"/p", "tok")
    old = ours.sign("POST", b"/p", "tok", now=time.time() - 60)
    with pytest.raises(AuthError, match="too old"):
        ours.check(old, "POST", b"/p", "tok")
    for bad in ("", "v1", "v1.x.y", "v2.1.abc", "v1.123."):
        with pytest.raises(AuthError, match="malformed"):
            ours.check(bad, "POST", b"/p", "tok")
    with pytest.raises(ValueError):
        EdgeProof("short")


# ---------------------------------------------------------------------- a service given the secret


def _service(jwks_url: str, secret: str | None) -> Service:
    env = {"SERVICE_NAME": "proofed", "SYSTEM_NAME": "test", "JWKS_URL": jwks_url, "JWT_ISSUER": ISS,
           "JWT_AUDIENCE": AUD}
    if secret:
        env["EDGE_PROOF_SECRET"] = secret
    svc = Service(settings=Settings.from_env(env))

    @svc.fast_route("POST", "/boxes/{box}/ballots", status_code=202, roles=("viewer",))
    async def cast(req: FastRequest) -> dict[str, str]:
        assert req.principal is not None
        return {"by": req.principal.sub}

    viewer = Depends(svc.principal("viewer"))

    @svc.app.get("/me")
    async def me(who: Principal = viewer) -> dict[str, str]:
        return {"by": who.sub}

    return svc


@pytest.fixture
async def proofed(jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    svc = _service(jwks_url, SECRET)
    async with (svc.app.router.lifespan_context(svc.app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://svc") as c):
        yield c


def _headers(token: str, proof: str | None = None) -> dict[str, str]:
    out = {"authorization": f"Bearer {token}"}
    if proof is not None:
        out[EDGE_PROOF_HEADER] = proof
    return out


async def _both(client: httpx.AsyncClient, token: str, proof_for: tuple[str, str] | None,
                secret: str = SECRET) -> list[httpx.Response]:
    """The fast route and a FastAPI route, each with a proof made for ``proof_for`` (method, path)."""
    out = []
    for method, path in (("POST", PATH), ("GET", "/me")):
        proof = None
        if proof_for is not None:
            m, p = proof_for if proof_for != ("same", "same") else (method, path)
            proof = EdgeProof(secret).sign(m, p.encode(), token)
        out.append(await client.request(method, path, headers=_headers(token, proof)))
    return out


async def test_a_valid_proof_stands_for_the_signature(proofed: httpx.AsyncClient, idp: DevIdP) -> None:
    # The forged signature shows the service trusted the proof and did not verify the token again.
    for resp in await _both(proofed, _forged(idp), ("same", "same")):
        assert resp.status_code in (200, 202), resp.text
        assert resp.json() == {"by": "mallory"}


async def test_without_a_proof_the_token_is_verified_in_full(proofed: httpx.AsyncClient, idp: DevIdP) -> None:
    for resp in await _both(proofed, _forged(idp), None):
        assert resp.status_code == 401
        assert "signature" in resp.json()["detail"]
    for resp in await _both(proofed, idp.mint("alice", ["viewer"]), None):
        assert resp.status_code in (200, 202)


async def test_a_forged_or_misdirected_proof_is_refused(proofed: httpx.AsyncClient, idp: DevIdP) -> None:
    token = idp.mint("alice", ["viewer"])  # a good token: a bad proof is refused, never a fall-back to it
    for resp in await _both(proofed, token, ("same", "same"), secret="x" * 64):
        assert resp.status_code == 401 and "edge proof" in resp.json()["detail"]
    for resp in await _both(proofed, token, ("DELETE", "/elsewhere")):
        assert resp.status_code == 401 and "edge proof" in resp.json()["detail"]
    resp = await proofed.post(PATH, headers=_headers(token, "v1.1.deadbeef"))
    assert resp.status_code == 401


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": int(time.time()) - 60}, "expired"),
    ({"aud": "https://someone-else.example"}, "audience"),
    ({"iss": "https://evil.example/"}, "issuer"),
    ({"roles": []}, "requires role"),
])
async def test_with_a_valid_proof_the_claims_still_hold(proofed: httpx.AsyncClient, idp: DevIdP,
                                                        claims: dict[str, Any], reason: str) -> None:
    for resp in await _both(proofed, _forged(idp, **claims), ("same", "same")):
        assert resp.status_code in (401, 403)
        assert reason in resp.json()["detail"]


async def test_a_service_without_the_secret_ignores_proofs(jwks_url: str, idp: DevIdP) -> None:
    svc = _service(jwks_url, None)
    async with (svc.app.router.lifespan_context(svc.app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://svc") as c):
        for resp in await _both(c, _forged(idp), ("same", "same")):
            assert resp.status_code == 401


# ---------------------------------------------------------------------- RS256 without PyJWT: same verdicts


def _pyjwt_verdict(v: JWTVerifier, token: str, key: Any) -> str:
    try:
        v._verify_pyjwt(token, key)
    except AuthError as exc:
        return str(exc)
    return "ok"


async def test_fast_rs256_path_agrees_with_pyjwt(jwks_url: str, idp: DevIdP) -> None:
    v = JWTVerifier(jwks_url=jwks_url, issuer=ISS, audience=AUD, cache_size=0)
    key = await v.jwks.key(idp.kid)
    now = int(time.time())
    variants: list[dict[str, Any]] = [
        {}, {"exp": now - 3}, {"exp": now - 60}, {"nbf": now + 60}, {"iat": now + 60}, {"aud": [AUD, "other"]},
        {"aud": ["other"]}, {"aud": "other"}, {"aud": [AUD, 7]}, {"iss": "x"}, {"exp": "soon"}, {"iat": None},
        {"sub": 7}, {"jti": 5}, {"exp": True},
    ]
    tokens = [idp.mint("u", ["viewer"], extra=over) for over in variants]
    for missing in ("exp", "iat", "sub", "iss", "aud"):
        body = {"iss": ISS, "aud": AUD, "sub": "u", "iat": now, "exp": now + 60}
        del body[missing]
        tokens.append(jwt.encode(body, idp.key, algorithm="RS256", headers={"kid": idp.kid}))
    good = idp.mint("u", ["viewer"])
    head, payload, sig = good.split(".")
    tokens += [f"{head}.{payload}.{sig[:-4]}AAAA", f"{head}.{_b64({'sub': 'x'})}.{sig}"]
    for token in tokens:
        try:
            await v.verify(token)
            fast = "ok"
        except AuthError as exc:
            fast = str(exc)
        assert fast == _pyjwt_verdict(v, token, key), (fast, jwt.decode(token, options={"verify_signature": False}))


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "e30.e30.e30=", "!!.e30.e30", "WzFd.e30.e30"])
async def test_malformed_tokens_are_refused_before_any_key(jwks_url: str, token: str) -> None:
    v = JWTVerifier(jwks_url=jwks_url, issuer=ISS, audience=AUD)
    with pytest.raises(AuthError, match="malformed"):
        await v.verify(token)
