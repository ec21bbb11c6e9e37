"""Hostile input against the running voting system, through the gateway and straight at each service.

* schemathesis generates valid and invalid requests from each service's own OpenAPI (FastAPI's
  /openapi.json) and checks the answers: no 5xx, every status code, content type and body as documented;
* forged tokens are refused with 401 by the gateway and by the services themselves (defence in depth);
* the anonymous (per-IP) rate limit answers 429 + Retry-After to the greedy client only;
* oversized and malformed bodies get 400/413/422 problem+json, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.openapi import from_dict  # noqa: E402

pytestmark = pytest.mark.integration

SERVICES = ("vote", "results", "auth", "web", "worker")
ROUTED = ("vote", "results", "auth", "web")  # the worker has no edge routes
EXAMPLES = 50  # per operation and generation mode: enough to find the cheap bugs, fast enough for every push
ADMIN_ROUTES = ("/polls", "/polls/{poll_id}/open", "/polls/{poll_id}/close")
_seq = itertools.count()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _problem(resp: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert resp.status_code in statuses, f"{resp.status_code} {resp.text[:300]}"
    assert resp.headers["content-type"] == "application/problem+json", resp.headers
    body = resp.json()
    assert body["status"] == resp.status_code
    return body


# ------------------------------------------------------------------------------------------------ schemathesis


def _fuzz(voting: Any, service: str, base_url: str, polls: list[str]) -> tuple[int, list[str]]:
    """Run every operation of ``service``'s OpenAPI against ``base_url``; return (cases, failures)."""
    docs = voting.state["services"][service][0]["platform_url"]  # API docs are on the platform port
    schema = from_dict(httpx.get(f"{docs}/openapi.json", timeout=10).json())
    session = requests.Session()
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            n, found = _fuzz_operation(voting, op, mode, base_url, polls, session)
            cases += n
            failures += found
    return cases, failures


def _fuzz_operation(voting: Any, op: Any, mode: GenerationMode, base_url: str, polls: list[str],
                    session: requests.Session) -> tuple[int, list[str]]:
    admin = op.method.upper() == "POST" and op.path in ADMIN_ROUTES
    stream = op.path.endswith("/stream")  # a real poll's stream never ends; random ids answer 404
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    failures: list[str] = []
    cases = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal cases
        n = next(_seq)
        cases += 1
        if "poll_id" in (case.path_parameters or {}) and not stream and n % 2 == 0:
            case.path_parameters["poll_id"] = polls[n // 2 % len(polls)]  # half the cases hit real polls
        headers = {
            # A fresh subject and client address per case keeps the edge rate limits out of the way.
            "authorization": f"Bearer {voting.idp.mint(f'fuzz-{n}', ['admin'] if admin else [])}",
            "x-forwarded-for": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
        }
        try:
            case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=checks, timeout=10)
        except BaseException as exc:  # collect rather than shrink: the report names the request
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {str(exc)[:1500]}")

    # Unsatisfiable: nothing invalid can be expressed for this operation (e.g. a free-form path string).
    with contextlib.suppress(Unsatisfiable):
        run()
    return cases, failures


@pytest.fixture(scope="module")
def fuzz_polls(voting: Any) -> list[str]:
    """Real polls for generated requests to hit: two open ones, one closed, one draft."""
    polls = [voting.new_poll()["id"], voting.new_poll()["id"]]
    closed = voting.new_poll()["id"]
    voting.client.post(f"/polls/{closed}/close", headers=voting.token("admin-1", "admin"))
    return [*polls, closed, voting.new_poll(open_it=False)["id"]]


def _fuzz_params() -> Iterator[Any]:
    for service in SERVICES:
        yield pytest.param(service, "direct", id=f"{service}-direct")
        if service in ROUTED:
            yield pytest.param(service, "gateway", id=f"{service}-via-gateway")


@pytest.mark.parametrize(("service", "via"), list(_fuzz_params()))
def test_openapi_fuzzing_finds_no_5xx_and_no_schema_violation(voting: Any, fuzz_polls: list[str], service: str,
                                                              via: str) -> None:
    base = voting.state["services"][service][0]["url"] if via == "direct" else voting.base
    cases, failures = _fuzz(voting, service, base, fuzz_polls)
    assert cases > 0
    assert not failures, f"{len(failures)} failing case(s) of {cases}:\n\n" + "\n\n".join(failures[:5])


# ------------------------------------------------------------------------------------------------ tokens


def _forged_tokens(voting: Any) -> dict[str, str]:
    """Tokens that must all be refused. The gateway cases of test_voting_e2e are repeated only for the
    direct-to-service run; the new ones here are HS256-with-the-public-key and key-id tricks."""
    ident = voting.system.edge.identity
    now = int(time.time())
    claims = {"iss": ident.issuer, "aud": ident.audience, "sub": "mallory", "iat": now, "exp": now + 300,
              "roles": ["admin"]}
    public_pem = voting.idp.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": voting.idp.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    hs256 = f"{signing_input}.{_b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())}"
    jwk_secret = json.dumps(voting.idp.jwks["keys"][0]).encode()
    hs256_jwk = f"{signing_input}.{_b64(hmac.new(jwk_secret, signing_input.encode(), hashlib.sha256).digest())}"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    valid_header, valid_payload, valid_sig = voting.idp.mint("mallory", ["admin"]).split(".")
    return {
        "HS256 signed with the public key (PEM)": hs256,
        "HS256 signed with the public JWK": hs256_jwk,
        "unknown kid": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "no-such-key"}),
        "known kid, other key": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": voting.idp.kid}),
        "no kid, other key": jwt.encode(claims, stranger, algorithm="RS256"),
        "kid path traversal": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "../../etc/passwd"}),
        "jku to elsewhere": jwt.encode(claims, stranger, algorithm="RS256",
                                       headers={"kid": "x", "jku": "http://127.0.0.1:1/jwks.json"}),
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}."
                    f"{_b64(json.dumps(claims).encode())}.",
        "alg None (case)": f"{_b64(json.dumps({'alg': 'None'}).encode())}.{_b64(json.dumps(claims).encode())}.",
        "signature stripped": f"{valid_header}.{valid_payload}.",
        "tampered payload": f"{valid_header}.{_b64(json.dumps({**claims, 'sub': 'someone-else'}).encode())}"
                            f".{valid_sig}",
        "wrong issuer": voting.idp.mint("mallory", ["admin"], extra={"iss": "https://evil.example/"}),
        "wrong audience": voting.idp.mint("mallory", ["admin"], extra={"aud": "https://elsewhere.example"}),
        "expired": voting.idp.mint("mallory", ["admin"], ttl_s=-120),
        "not yet valid": voting.idp.mint("mallory", ["admin"], extra={"nbf": now + 3600}),
        "no exp": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, voting.idp.key, algorithm="RS256",
                             headers={"kid": voting.idp.kid}),
        "garbage": "not-a-jwt",
        "header not json": f"{_b64(b'{nope')}.{valid_payload}.{valid_sig}",
        "huge token": "a" * 8000,
    }


GATEWAY_ONLY_NEW = ("HS256 signed with the public key (PEM)", "HS256 signed with the public JWK", "unknown kid",
                    "known kid, other key", "no kid, other key", "kid path traversal", "jku to elsewhere",
                    "alg None (case)", "signature stripped", "no exp", "header not json", "huge token")


def test_forged_tokens_are_401_at_the_gateway_and_at_each_service(voting: Any) -> None:
    poll = voting.new_poll()["id"]
    vote_url = voting.state["services"]["vote"][0]["url"]
    auth_url = voting.state["services"]["auth"][0]["url"]
    tokens = _forged_tokens(voting)
    targets = [
        # (label, method, url, body, attacks)
        ("gateway POST votes", "POST", f"{voting.base}/polls/{poll}/votes", {"option": "A"}, GATEWAY_ONLY_NEW),
        ("gateway POST polls (admin)", "POST", f"{voting.base}/polls", {"title": "x", "options": ["A", "B"]},
         GATEWAY_ONLY_NEW),
        ("vote service POST votes", "POST", f"{vote_url}/polls/{poll}/votes", {"option": "A"}, tuple(tokens)),
        ("vote service POST polls (admin)", "POST", f"{vote_url}/polls", {"title": "x", "options": ["A", "B"]},
         tuple(tokens)),
        ("auth service GET /auth/me", "GET", f"{auth_url}/auth/me", None, tuple(tokens)),
    ]
    pids = {s: voting.state["services"][s][0]["pid"] for s in ("vote", "auth")}
    wrong: list[str] = []
    with httpx.Client(timeout=10) as client:
        for label, method, url, body, attacks in targets:
            for i, name in enumerate(attacks):
                # A distinct client address per request: the anonymous edge limit is not what is tested here.
                headers = {"authorization": f"Bearer {tokens[name]}", "x-forwarded-for": f"10.250.{i}.{len(label)}"}
                resp = client.request(method, url, json=body, headers=headers)
                if resp.status_code != 401 or resp.headers.get("content-type") != "application/problem+json":
                    wrong.append(f"{label} / {name}: {resp.status_code} {resp.text[:200]}")
                elif "www-authenticate" not in resp.headers:
                    wrong.append(f"{label} / {name}: 401 without WWW-Authenticate")
    assert not wrong, "\n".join(wrong)
    # Nothing crashed, nothing was counted, no poll was created by mallory.
    assert all(httpx.get(f"{voting.state['services'][s][0]['platform_url']}/healthz").status_code == 200
               for s in pids)
    from stackwright.local.state import read_state

    now = read_state("voting", voting.state_root)
    assert {s: now["services"][s][0]["pid"] for s in pids} == pids
    assert voting.client.get(f"/polls/{poll}/results").json()["total"] == 0
    # The real token still works after all that (the JWKS cache was not poisoned).
    ok = voting.client.post(f"/polls/{poll}/votes", json={"option": "A"}, headers=voting.token("honest-viewer"))
    assert ok.status_code == 202, ok.text


# ------------------------------------------------------------------------------------------------ rate limits


def test_anonymous_clients_are_limited_per_ip_and_others_are_unaffected(voting: Any) -> None:
    limit = voting.system.edge.rate_limits["anonymous"]
    poll = voting.new_poll()["id"]
    greedy_ip, calm_ip = "198.51.100.7", "198.51.100.8"
    url = f"{voting.base}/polls/{poll}/results"
    n = limit.burst + 2 * int(limit.requests_per_second) + 50  # more than the bucket can give in ~2 s

    async def flood() -> list[tuple[int, str | None]]:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one() -> tuple[int, str | None, str | None]:
                async with session.get(url, headers={"x-forwarded-for": greedy_ip}) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("retry-after"), resp.headers.get("content-type")

            return await asyncio.gather(*(one() for _ in range(n)))

    answers = asyncio.run(flood())
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 429}, statuses
    limited = [(ra, ct) for s, ra, ct in answers if s == 429]
    assert limited, f"no 429 in {n} requests from one IP"
    assert statuses.count(200) >= limit.burst  # the burst itself was served
    assert all(ra is not None and int(ra) >= 1 and ct == "application/problem+json" for ra, ct in limited)
    # Right after, another address is served, and so is a viewer voting from the greedy address (the vote
    # route is limited per token subject, not per IP).
    calm = voting.client.get(url, headers={"x-forwarded-for": calm_ip})
    assert calm.status_code == 200, calm.text
    viewer = voting.client.post(f"/polls/{poll}/votes", json={"option": "B"},
                                headers={**voting.token("viewer-on-greedy-ip"), "x-forwarded-for": greedy_ip})
    assert viewer.status_code == 202, viewer.text


# ------------------------------------------------------------------------------------------------ bodies


def _raw_http(base: str, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes (a request httpx refuses to build) and return the status and the whole answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    return int(raw.split(b" ", 2)[1]), raw


@pytest.mark.parametrize("via", ["gateway", "direct"])
def test_oversized_and_malformed_bodies_are_4xx_never_500(voting: Any, via: str) -> None:
    poll = voting.new_poll()["id"]
    base = voting.base if via == "gateway" else voting.state["services"]["vote"][0]["url"]
    url = f"{base}/polls/{poll}/votes"
    seq = itertools.count()

    def viewer() -> dict[str, str]:
        return {**voting.token(f"body-{via}-{next(seq)}"), "content-type": "application/json"}

    big = 17 * 1024
    cases: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
        "oversized (content-length)": ({"content": b'{"option": "' + b"A" * big + b'"}'}, (413,)),
        "oversized (chunked, no length)": ({"content": iter([b'{"option": "', b"A" * big, b'"}'])}, (413,)),
        "not json": ({"content": b'{"option":'}, (400,)),
        "invalid utf-8": ({"content": b'{"option": "\xff\xfe"}'}, (400,)),
        "deeply nested": ({"content": b"[" * 5000 + b"]" * 5000}, (400, 422)),
        "huge integer": ({"content": b'{"option": ' + b"9" * 5000 + b"}"}, (400, 422)),
        "json array": ({"content": b'["A"]'}, (422,)),
        "wrong type": ({"content": b'{"option": 5}'}, (422,)),
        "null": ({"content": b"null"}, (422,)),
        "empty": ({"content": b""}, (422,)),
        "NUL in option": ({"content": b'{"option": "A\\u0000"}'}, (422,)),
        "unknown option": ({"content": b'{"option": "Z"}'}, (422,)),
        "option too long": ({"content": b'{"option": "' + b"A" * 101 + b'"}'}, (422,)),
    }
    wrong = []
    with httpx.Client(timeout=10) as client:
        for name, (kw, expected) in cases.items():
            resp = client.post(url, headers=viewer(), **kw)
            if resp.status_code not in expected or resp.headers.get("content-type") != "application/problem+json":
                wrong.append(f"{name}: {resp.status_code} {resp.text[:200]}")
        for name, body in {"poll title with NUL": {"title": "A\u0000", "options": ["A", "B"]},
                           "too many options": {"title": "x", "options": [str(i) for i in range(21)]},
                           "options not a list": {"title": "x", "options": "AB"}}.items():
            resp = client.post(f"{base}/polls", json=body, headers=voting.token(f"admin-{via}", "admin"))
            if resp.status_code != 422:
                wrong.append(f"{name}: {resp.status_code} {resp.text[:200]}")
    # A Content-Length that is not a number, and one that promises more than is sent: built by hand.
    token = voting.token(f"body-{via}-raw")["authorization"]
    host = urlsplit(base).netloc
    bad_length = (f"POST /polls/{poll}/votes HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: abc\r\nConnection: close\r\n\r\n"
                  '{"option": "A"}').encode()
    status, raw = _raw_http(base, bad_length)
    if status != 400:
        wrong.append(f"content-length abc: {status} {raw[:200]!r}")
    assert not wrong, "\n".join(wrong)
    # None of it was counted; the service is still healthy.
    assert voting.client.get(f"/polls/{poll}/results").json()["total"] == 0
    assert httpx.get(f"{voting.state['services']['vote'][0]['platform_url']}/healthz").status_code == 200


def test_unknown_poll_ids_of_every_shape_are_4xx(voting: Any) -> None:
    viewer = voting.token("shape-tester")
    for poll_id in (str(uuid.uuid4()), "not-a-uuid", "%00", "..%2F..%2Fetc", "1" * 300, "' OR 1=1 --"):
        for method, path in (("POST", f"/polls/{poll_id}/votes"), ("GET", f"/polls/{poll_id}/results"),
                             ("GET", f"/polls/{poll_id}")):
            resp = voting.client.request(method, path, json={"option": "A"} if method == "POST" else None,
                                         headers={**viewer, "x-forwarded-for": "10.251.0.1"})
            # 403: the edge routes POST /polls/... as the admin-only /polls prefix once '%2F' is decoded.
            assert resp.status_code in (400, 403, 404, 405), f"{method} {path}: {resp.status_code} {resp.text[:200]}"
            assert resp.headers["content-type"] == "application/problem+json"
