"""JWT verification against a real JWKS endpoint: valid tokens pass, every attack is a clean AuthError."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from tests.helpers import AUD, ISS, serve

from stackwright.local.idp import DevIdP
from stackwright.runtime.auth import AuthError, JWTVerifier, bearer_token


@pytest.fixture
def verifier(jwks_url: str) -> JWTVerifier:
    return JWTVerifier(jwks_url=jwks_url, issuer=ISS, audience=AUD)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**over: object) -> dict:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "sub": "u1", "iat": now, "nbf": now, "exp": now + 60, "roles": ["admin"]} | over


async def test_valid_token(verifier: JWTVerifier, idp: DevIdP) -> None:
    who = await verifier.verify(idp.mint("alice", ["admin", "viewer"]))
    assert who.sub == "alice" and who.has_roles(["admin"]) and not who.has_roles(["root"])


async def test_alg_none_rejected(verifier: JWTVerifier) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    with pytest.raises(AuthError, match="algorithm 'none' is not allowed"):
        await verifier.verify(token)


async def test_hs256_signed_with_public_key_rejected(verifier: JWTVerifier, idp: DevIdP) -> None:
    public_pem = idp.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "kid": idp.kid, "typ": "JWT"}
    signing_input = f"{_b64(header)}.{_b64(_claims())}".encode()
    import hashlib
    import hmac

    sig = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(AuthError, match="algorithm 'HS256' is not allowed"):
        await verifier.verify(signing_input.decode() + "." + sig.decode())


@pytest.mark.parametrize(("over", "reason"), [
    ({"iss": "https://evil.example/"}, "issuer is not trusted"),
    ({"aud": "https://other.example"}, "audience is not accepted"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
])
async def test_bad_claims_rejected(verifier: JWTVerifier, idp: DevIdP, over: dict, reason: str) -> None:
    token = jwt.encode(_claims(**over), idp.key, algorithm="RS256", headers={"kid": idp.kid})
    with pytest.raises(AuthError, match=reason):
        await verifier.verify(token)


async def test_missing_sub_rejected(verifier: JWTVerifier, idp: DevIdP) -> None:
    claims = _claims()
    del claims["sub"]
    with pytest.raises(AuthError, match="lacks the 'sub' claim"):
        await verifier.verify(jwt.encode(claims, idp.key, algorithm="RS256", headers={"kid": idp.kid}))


async def test_tampered_payload_rejected(verifier: JWTVerifier, idp: DevIdP) -> None:
    header, _, sig = idp.mint("bob", ["viewer"]).split(".")
    forged = f"{header}.{_b64(_claims(sub='bob', roles=['admin']))}.{sig}"
    with pytest.raises(AuthError, match="signature does not verify"):
        await verifier.verify(forged)


async def test_unknown_kid_and_foreign_key_rejected(verifier: JWTVerifier, tmp_path: Path) -> None:
    stranger = DevIdP(tmp_path / "other.pem", issuer=ISS, audience=AUD)
    with pytest.raises(AuthError, match="unknown key id"):
        await verifier.verify(stranger.mint("mallory", ["admin"]))


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30.sig"])
async def test_garbage_is_a_clean_error(verifier: JWTVerifier, token: str) -> None:
    with pytest.raises(AuthError):
        await verifier.verify(token)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer ", "abc"):
        with pytest.raises(AuthError):
            bearer_token(bad)


def test_symmetric_only_allow_list_refused() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        JWTVerifier(jwks_url="http://127.0.0.1:1/", issuer=ISS, audience=AUD, algorithms=["HS256"])


async def test_remembered_token_is_refused_once_expired(jwks_url: str, idp: DevIdP) -> None:
    verifier = JWTVerifier(jwks_url=jwks_url, issuer=ISS, audience=AUD, leeway_s=0)
    # int() truncates, so "+ 1" left as little as a few ms before expiry, less than the first JWKS fetch took
    # in one CI run (the token had expired before its first check): give it 3 s, then wait them out.
    exp = int(time.time()) + 3
    token = jwt.encode(_claims(exp=exp), idp.key, algorithm="RS256", headers={"kid": idp.kid})
    assert (await verifier.verify(token)).sub == "u1"
    assert (await verifier.verify(token)).sub == "u1"  # answered from memory
    while time.time() <= exp + 0.05:
        time.sleep(0.05)
    with pytest.raises(AuthError, match="expired"):
        await verifier.verify(token)


async def test_remembered_tokens_are_checked_again_after_the_keys_change(tmp_path: Path) -> None:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    old, new = DevIdP(tmp_path / "old.pem", issuer=ISS, audience=AUD), DevIdP(tmp_path / "new.pem", issuer=ISS,
                                                                               audience=AUD)
    published = {"idp": old}

    async def jwks(_: object) -> JSONResponse:
        return JSONResponse(published["idp"].jwks)

    with serve(Starlette(routes=[Route("/jwks", jwks)])) as base:
        verifier = JWTVerifier(jwks_url=f"{base}/jwks", issuer=ISS, audience=AUD)
        verifier.jwks.min_refresh_s = 0
        old_token = old.mint("alice", ["viewer"])
        assert (await verifier.verify(old_token)).sub == "alice"
        published["idp"] = new  # the old key is rotated out
        assert (await verifier.verify(new.mint("bob", ["viewer"]))).sub == "bob"  # unknown kid -> refetch
        with pytest.raises(AuthError, match="unknown key id"):
            await verifier.verify(old_token)


async def test_memory_of_verified_tokens_is_bounded(jwks_url: str, idp: DevIdP) -> None:
    verifier = JWTVerifier(jwks_url=jwks_url, issuer=ISS, audience=AUD, cache_size=3)
    for i in range(10):
        assert (await verifier.verify(idp.mint(f"user{i}", ["viewer"]))).sub == f"user{i}"
    assert len(verifier._verified) == 3
