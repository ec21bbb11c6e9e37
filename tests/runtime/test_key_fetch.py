"""Fetching signing keys: one TLS context per process, and a service holds its keys before its first caller.

Before: every JWKS fetch built a new httpx client, and with it a new ``ssl.SSLContext`` loaded with the CA bundle
(~40 ms of CPU on the event loop, 220 ms for a process' first), and a service fetched its keys only when the first
token came, so a freshly started ws-proxy kept its first stream's handshake waiting ~0.5 s.
"""

from __future__ import annotations

import ssl

import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from tests.helpers import AUD, ISS, serve

from stackwright.http_client import async_client, tls_context
from stackwright.local.idp import DevIdP
from stackwright.runtime import Service, Settings
from stackwright.runtime.auth import JWKSCache


async def test_key_fetches_load_no_ca_bundle_after_the_first(jwks_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tls_context()  # the process' one context, built before counting
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    cache = JWKSCache(jwks_url)
    for _ in range(3):
        assert await cache.prime()
    async with async_client() as a, async_client() as b:
        assert a is not b
    assert loads == []


async def test_a_service_holds_its_signing_keys_once_started(tmp_path_factory: pytest.TempPathFactory) -> None:
    idp = DevIdP(tmp_path_factory.mktemp("idp") / "key.pem", issuer=ISS, audience=AUD)
    fetched: list[str] = []
    idp_app = Starlette(routes=idp.routes("/auth"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fetched.append(scope["path"])
        await idp_app(scope, receive, send)

    with serve(app) as base:
        svc = Service(settings=Settings.from_env({
            "SERVICE_NAME": "keys", "SYSTEM_NAME": "test", "JWKS_URL": f"{base}/auth/.well-known/jwks.json",
            "JWT_ISSUER": ISS, "JWT_AUDIENCE": AUD}))
        async with svc.app.router.lifespan_context(svc.app):
            assert fetched == ["/auth/.well-known/jwks.json"]  # before any token came
            who = await svc.authenticate(f"Bearer {idp.mint('ana', [])}")
            assert who.sub == "ana"
            assert fetched == ["/auth/.well-known/jwks.json"]  # the first token needed no fetch of its own


async def test_a_service_whose_identity_provider_is_down_still_starts(tmp_path_factory: pytest.TempPathFactory) -> None:
    from stackwright.local.ports import free_port

    svc = Service(settings=Settings.from_env({
        "SERVICE_NAME": "keys", "SYSTEM_NAME": "test",
        "JWKS_URL": f"http://127.0.0.1:{free_port()}/auth/.well-known/jwks.json",
        "JWT_ISSUER": ISS, "JWT_AUDIENCE": AUD}))
    async with svc.app.router.lifespan_context(svc.app):
        assert svc.verifier.jwks.generation == 0  # nothing fetched; the first token check tries again
