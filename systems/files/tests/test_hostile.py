"""Hostile input: schemathesis on each service's OpenAPI (no 5xx), forged tokens, malformed multipart."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from typing import Any

import httpx
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from .conftest import Files

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.openapi import from_dict  # noqa: E402

pytestmark = pytest.mark.integration

# Per operation and mode. 4 keeps the three services near a minute on 2 cores; FILES_FUZZ_EXAMPLES=50 for a deeper
# run (15 passed with 0 5xx in 230 s when this was written).
EXAMPLES = int(os.environ.get("FILES_FUZZ_EXAMPLES", "4"))
_seq = itertools.count()


def _fuzz_operation(files: Files, op: Any, mode: GenerationMode, base_url: str, session: requests.Session,
                    failures: list[str]) -> int:
    cases = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal cases
        cases += 1
        headers = {"authorization": f"Bearer {files.idp.mint(f'fuzz-{next(_seq)}')}"}
        try:
            case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=[not_a_server_error],
                                   timeout=30)
        except BaseException as exc:  # collect rather than shrink: the report names the request
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {str(exc)[:800]}")

    # Unsatisfiable: nothing invalid can be expressed for this operation.
    with contextlib.suppress(Unsatisfiable):
        run()
    return cases


@pytest.mark.parametrize("service", ["file", "permission", "search"])
def test_openapi_fuzzing_finds_no_5xx(files: Files, service: str) -> None:
    direct = files.service_url(service)
    docs = files.state["services"][service][0]["platform_url"]  # API docs are on the platform port
    schema = from_dict(httpx.get(f"{docs}/openapi.json", timeout=10).json())
    session = requests.Session()
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases += _fuzz_operation(files, result.ok(), mode, direct, session, failures)
    assert cases > 0
    assert not failures, "\n".join(failures)


def _forged(files: Files) -> dict[str, str]:
    ident = files.system.edge.identity
    assert ident is not None
    now = int(time.time())
    claims = {"iss": ident.issuer, "aud": ident.audience, "sub": "mallory", "iat": now, "exp": now + 600}
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    real = files.idp.mint("mallory")
    header = jwt.get_unverified_header(real)
    head, _, sig = real.split(".")
    evil_payload = jwt.utils.base64url_encode(b'{"sub":"alice"}').decode()
    return {
        "unsigned (alg none)": jwt.encode(claims, key=None, algorithm="none"),  # type: ignore[arg-type]
        "signed by another key, same kid": jwt.encode(claims, other_key, algorithm="RS256",
                                                      headers={"kid": header["kid"]}),
        "HS256 with the public key id": jwt.encode(claims, "secret" * 8, algorithm="HS256",
                                                   headers={"kid": header["kid"]}),
        "expired": files.idp.mint("mallory", ttl_s=-120),
        "wrong audience": files.idp.mint("mallory", extra={"aud": "someone-else"}),
        "wrong issuer": files.idp.mint("mallory", extra={"iss": "https://evil.example.com/"}),
        "tampered payload": f"{head}.{evil_payload}.{sig}",
        "garbage": "not.a.token",
    }


def test_forged_tokens_are_401_at_the_edge_and_at_each_service(files: Files) -> None:
    _, alice = files.user("alice")
    f = files.upload(alice, b"secret")
    targets = [("GET", f"{files.base}/files/{f['id']}"), ("GET", f"{files.service_url('file')}/files/{f['id']}"),
               ("POST", f"{files.service_url('file')}/files?name=x"),
               ("GET", f"{files.service_url('permission')}/groups"),
               ("GET", f"{files.service_url('search')}/search?q=secret")]
    wrong = []
    for label, token in _forged(files).items():
        for method, url in targets:
            resp = httpx.request(method, url, headers={"authorization": f"Bearer {token}"}, content=b"x", timeout=10)
            if resp.status_code != 401 or resp.headers.get("content-type") != "application/problem+json":
                wrong.append(f"{label} {method} {url}: {resp.status_code} {resp.text[:120]}")
    assert wrong == []
    assert files.client.get(f"/files/{f['id']}", headers=alice).status_code == 200


MALFORMED: dict[str, tuple[str, bytes]] = {
    "no boundary": ("multipart/form-data",
                    b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nab\r\n--x--\r\n"),
    "truncated": ("multipart/form-data; boundary=x",
                  b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc"),
    "no file part": ("multipart/form-data; boundary=x",
                     b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nabc\r\n--x--\r\n"),
    "two file parts": ("multipart/form-data; boundary=x",
                       b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n1\r\n"
                       b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\n2\r\n--x--\r\n"),
    "garbage framing": ("multipart/form-data; boundary=x", b"\x00\xff not multipart at all \r\n\r\n--y--"),
    "huge part header": ("multipart/form-data; boundary=x",
                         b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + b"a" * 10000
                         + b"\"\r\n\r\n1\r\n--x--\r\n"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_multipart_is_400_and_leaves_nothing(files: Files, case: str) -> None:
    sub, alice = files.user("alice")
    before = files.visible_objects("originals")
    ctype, body = MALFORMED[case]
    resp = files.client.post("/files", content=body, headers={**alice, "content-type": ctype})
    assert resp.status_code in (400, 422), resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert files.visible_objects("originals") == before
    assert files.sql("SELECT count(*) AS n FROM files WHERE owner_id = $1", sub)[0]["n"] == 0
