"""The HAProxy edge of the issue-18 benchmark (``vote_edge_haproxy``) admits what our gateway admits.

It stands in for the gateway on the vote route, so it must refuse every token the gateway refuses (bad
signature, another algorithm, expired, wrong issuer or audience, missing claims) with 401 problem+json, drop a
client's own ``x-edge-proof``, and sign a proof the vote service accepts (a wrong proof is a 401 from the
service, never a fall-back to the token). HAProxy is Debian's package (``.ci/run`` installs it): these tests
skip, saying so, when haproxy >= 2.6 is not installed, and fail instead under CI (``CI`` set), which must never
turn green by skipping.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from stackwright.bench import haproxy_edge
from stackwright.local.ports import free_port

EXE = haproxy_edge.binary()
if EXE is None or haproxy_edge.version(EXE) < (2, 6):
    _REASON = "haproxy >= 2.6 is not installed (apt-get install haproxy)"
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run every test, but {_REASON}")
    pytest.skip(_REASON, allow_module_level=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def edge(voting: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    sdir = voting.state_root / "voting"
    gateway = json.loads((sdir / "gateway.json").read_text())
    tmp = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    public_key = haproxy_edge.write_public_key(sdir / "idp-key.pem", tmp / "idp-public.pem")
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(haproxy_edge.config(gateway, "/polls/{id}/votes", port=port, public_key=public_key))
    assert EXE is not None
    proc = subprocess.Popen([EXE, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        voting.wait_until(lambda: _listening(client), timeout_s=10)
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _listening(client: httpx.Client) -> bool:
    try:
        client.get("/")
    except httpx.TransportError:
        return False
    return True


def _vote(edge: httpx.Client, poll: str, token: str, **headers: str) -> httpx.Response:
    return edge.post(f"/polls/{poll}/votes", json={"option": "A"},
                     headers={"authorization": f"Bearer {token}", **headers})


def test_a_verified_vote_is_accepted_once_through_haproxy(voting: Any, edge: httpx.Client) -> None:
    poll = voting.new_poll()["id"]
    token = voting.idp.mint("hap-viewer-1", ["viewer"])
    first = _vote(edge, poll, token)
    # 202 means the vote service accepted HAProxy's proof: a proof that does not check out is a 401 there.
    assert first.status_code == 202, first.text
    again = _vote(edge, poll, token)
    assert again.status_code == 409
    # A client's own proof is dropped, not passed on: HAProxy's replaces it, so the vote still goes through.
    other = _vote(edge, poll, voting.idp.mint("hap-viewer-2", ["viewer"]), **{"x-edge-proof": "v1.1.forged"})
    assert other.status_code == 202, other.text
    voting.wait_until(lambda: voting.db_count(poll) == 2, timeout_s=20)


def test_haproxy_refuses_what_the_gateway_refuses(voting: Any, edge: httpx.Client) -> None:
    poll = voting.new_poll()["id"]
    ident = voting.system.edge.identity
    now = int(time.time())
    claims = {"iss": ident.issuer, "aud": ident.audience, "sub": "hap-bad", "iat": now, "exp": now + 600,
              "roles": ["viewer"]}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = voting.idp.mint("hap-bad", ["viewer"])
    head, _, signature = good.split(".")
    bad = {
        "another key": jwt.encode(claims, stranger, algorithm="RS256"),
        "HS256": jwt.encode(claims, "a-shared-secret-of-thirty-two-bytes", algorithm="HS256"),
        "alg none": _b64(b'{"alg":"none","typ":"JWT"}') + "." + good.split(".")[1] + ".",
        "payload swapped": f"{head}.{_b64(json.dumps({**claims, 'sub': 'someone-else'}).encode())}.{signature}",
        "expired": voting.idp.mint("hap-bad", ["viewer"], extra={"exp": now - 60}),
        "issued in the future": voting.idp.mint("hap-bad", ["viewer"], extra={"iat": now + 600}),
        "wrong issuer": voting.idp.mint("hap-bad", ["viewer"], extra={"iss": "https://elsewhere.example/"}),
        "wrong audience": voting.idp.mint("hap-bad", ["viewer"], extra={"aud": "https://other.example"}),
        "no exp": voting.idp.mint("hap-bad", ["viewer"], extra={"exp": None}),
        "not a token": "abc",
    }
    for what, token in bad.items():
        resp = _vote(edge, poll, token)
        assert resp.status_code == 401, (what, resp.status_code, resp.text)
        assert resp.headers["content-type"] == "application/problem+json", what
        assert resp.json()["status"] == 401, what
        assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"', what
    missing = edge.post(f"/polls/{poll}/votes", json={"option": "A"})
    assert missing.status_code == 401
    assert voting.db_count(poll) == 0


def test_haproxy_serves_only_the_vote_route(edge: httpx.Client) -> None:
    assert edge.get("/polls").status_code == 404
    wrong_method = edge.get("/polls/x/votes")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
    too_big = edge.post("/polls/x/votes", content=b"x" * 20000, headers={"authorization": "Bearer x"})
    assert too_big.status_code == 413


def test_the_config_refuses_a_route_without_auth(voting: Any) -> None:
    gateway = json.loads((voting.state_root / "voting" / "gateway.json").read_text())
    with pytest.raises(ValueError, match="does not require a token"):
        haproxy_edge.config(gateway, "/polls/{id}/results", port=1, public_key=Path("/nonexistent"))
    with pytest.raises(ValueError, match="roles"):  # the admin routes: roles are not checked by this config
        haproxy_edge.config(gateway, "/polls/{id}/open", port=1, public_key=Path("/nonexistent"))
