"""An HAProxy edge for one authenticated route, for measuring what a compiled proxy costs per request.

Issue 18 asked whether a compiled edge that verifies JWTs closes the gap between votes through our Python
gateway and a bare ASGI handler. This module writes an HAProxy (2.6+) configuration that does, for one
route of the local gateway's table (``gateway.json``, written by the runner), what
:class:`stackwright.local.gateway.Gateway` does for it:

- only that route's path pattern and methods (404 / 405 problem+json otherwise) and its body limit (413);
- the bearer token: header ``alg`` on the identity's allow-list, RS256 signature (``jwt_verify`` against the
  public key derived from the dev IdP's private key), ``exp`` / ``nbf`` / ``iat`` with the verifier's 5 s
  leeway, ``iss``, ``aud`` (a string claim; a list of audiences is refused, see :func:`config`), ``sub``
  present; 401 problem+json with ``WWW-Authenticate: Bearer error="invalid_token"`` otherwise;
- the route's per-viewer rate limit keyed by ``sub``: a stick table counting requests over ``burst / rate``
  seconds, refused past ``burst`` (429 + Retry-After). This is a sliding-window count, not the gateway's
  token bucket: the same long-run rate and burst, a different shape within the window;
- the edge proof of :class:`stackwright.runtime.auth.EdgeProof` (``v1.<ts>.hex(HMAC-SHA256(secret,
  "v1\\n" ts "\\n" METHOD "\\n" raw path "\\n" token))``) with HAProxy's ``hmac`` converter, after dropping
  any ``x-edge-proof`` the client sent, plus ``X-Forwarded-For`` / ``X-Forwarded-Proto``; then keep-alive
  connections to the service.

It is a benchmark fixture (``stackwright bench voting --only vote_edge_haproxy``), not a replacement for the
local gateway: it serves one route, has no IdP endpoints, no metrics, no WebSockets.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..runtime.problems import problem_bytes

LEEWAY_S = 5  # JWTVerifier's default leeway for exp / nbf / iat
BINARY = "haproxy"


def binary() -> str | None:
    """The haproxy executable on PATH (or in /usr/sbin, where Debian puts it), None when not installed."""
    return shutil.which(BINARY) or shutil.which(BINARY, path="/usr/sbin:/usr/local/sbin")


def version(exe: str) -> tuple[int, int]:
    """(major, minor) of ``haproxy -v``; ``jwt_verify`` and ``hmac`` need 2.6 or later."""
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"version (\d+)\.(\d+)", out)
    if not found:
        raise RuntimeError(f"cannot read the version of {exe}: {out[:80]!r}")
    return int(found[1]), int(found[2])


def write_public_key(private_pem: Path, out: Path) -> Path:
    """The SubjectPublicKeyInfo PEM of an RSA private key file (``jwt_verify`` loads a public key file)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.read_bytes(), password=None)
    out.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def _path_regex(pattern: str) -> str:
    """``/polls/{id}/votes`` -> ``^/polls/[^/]+/votes$`` (a template segment matches one path segment)."""
    parts = re.split(r"(\{[^}]+\})", pattern)
    return "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"


def _problem(status: int, detail: str, headers: str = "") -> str:
    """An ``http-request return`` answering problem+json (the body inlined with strong quotes)."""
    body = problem_bytes(status, detail).decode()
    if "'" in body:
        raise ValueError(f"problem detail must not hold a single quote: {detail!r}")
    return (f"http-request return status {status} content-type application/problem+json "
            f"string '{body}'{headers}")


def config(gateway: dict[str, Any], pattern: str, *, port: int, public_key: Path, threads: int = 1) -> str:
    """The HAProxy configuration for the gateway route ``pattern`` (e.g. ``/polls/{id}/votes``).

    ``gateway`` is the runner's ``gateway.json``; the route must require auth and its service have one or
    more upstreams. Raises ValueError when the route is not there, does not require a token, needs roles or
    API keys (not written), or the identity allows no RS-family algorithm (HAProxy 2.6's ``jwt_verify`` does
    not do PS*).
    """
    route = next((r for r in gateway["routes"] if r["pattern"] == pattern), None)
    if route is None:
        raise ValueError(f"no route {pattern!r} in the gateway's table")
    if route["auth"] != "required":
        raise ValueError(f"route {pattern!r} does not require a token: nothing for the edge to verify")
    if route.get("roles") or route.get("api_key_prefixes"):
        # Not written (the vote route needs neither): refuse rather than admit what the gateway would not.
        raise ValueError(f"route {pattern!r} needs roles or API keys, which this configuration does not check")
    ident = gateway["identity"]
    algs = [a for a in ident.get("algorithms") or ["RS256"] if a in ("RS256", "RS384", "RS512")]
    if not algs:
        raise ValueError("the identity allows no RS256/384/512 algorithm; HAProxy 2.6 verifies no PS*")
    secret = gateway.get("edge_proof_secret")
    if not secret:
        raise ValueError("the gateway config holds no edge_proof_secret: the service would verify again")
    key_b64 = base64.b64encode(secret.encode()).decode()
    methods = " ".join(route["methods"] or ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    max_body = route.get("max_body") or gateway.get("max_body", 1048576)
    limit = gateway["rate_limits"].get(route.get("rate_limit") or gateway.get("default_rate_limit") or "")
    upstreams = [u.removeprefix("http://") for u in gateway["upstreams"][route["service"]]]
    invalid = ' hdr www-authenticate \'Bearer error="invalid_token"\''
    deny = _problem(401, "token is not valid", invalid)
    lines = [
        "global",
        f"    nbthread {threads}",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 30s",
        "    option http-keep-alive",
        # X-Forwarded-For as the gateway sends it (the client address); proto set below.
        "    option forwardfor",
        "",
        "frontend edge",
        f"    bind 127.0.0.1:{port}",
        f"    acl route path_reg {_path_regex(pattern)}",
        f"    acl allowed_method method {methods}",
        f"    {_problem(404, 'no route for this path')} unless route",
        f"    {_problem(405, 'method is not allowed here', ' hdr allow ' + repr(', '.join(route['methods'] or [])))}"
        " unless allowed_method",
        f"    {_problem(413, f'request body exceeds {max_body} bytes')} "
        f"if {{ req.hdr_val(content-length) gt {max_body} }}",
        # A client's own proof is never passed on (the gateway drops it too).
        "    http-request del-header x-edge-proof",
        "    http-request set-var(txn.token) http_auth_bearer",
        f"    {_problem(401, 'missing bearer token', invalid)} unless {{ var(txn.token) -m found }}",
        "    http-request set-var(txn.alg) var(txn.token),jwt_header_query('$.alg')",
        f"    {deny} unless {{ var(txn.alg) -m str {' '.join(algs)} }}",
        # jwt_verify returns 1 for a good signature, 0 or a negative code otherwise: compare to 1, never a boolean.
        # One line per allowed algorithm: the key file must be named literally for HAProxy's key cache.
        *[f"    {deny} if {{ var(txn.alg) -m str {alg} }} "
          f"!{{ var(txn.token),jwt_verify({alg},\"{public_key}\") -m int 1 }}" for alg in algs],
        "    http-request set-var(txn.now) date()",
        "    http-request set-var(txn.exp) var(txn.token),jwt_payload_query('$.exp','int')",
        "    http-request set-var(txn.iat) var(txn.token),jwt_payload_query('$.iat','int')",
        "    http-request set-var(txn.nbf) var(txn.token),jwt_payload_query('$.nbf','int')",
        "    http-request set-var(txn.sub) var(txn.token),jwt_payload_query('$.sub')",
        f"    {_problem(401, 'token lacks a required claim', invalid)} unless {{ var(txn.exp) -m found }} "
        "{ var(txn.iat) -m found } { var(txn.sub) -m found }",
        # exp + leeway > now, iat - leeway <= now, nbf - leeway <= now (as JWTVerifier.check_claims).
        f"    {_problem(401, 'token has expired', invalid)} unless "
        f"{{ var(txn.exp),add({LEEWAY_S}),sub(txn.now) gt 0 }}",
        f"    {_problem(401, 'token is not valid yet', invalid)} if "
        f"{{ var(txn.iat),sub({LEEWAY_S}),sub(txn.now) gt 0 }}",
        f"    {_problem(401, 'token is not valid yet', invalid)} if {{ var(txn.nbf) -m found }} "
        f"{{ var(txn.nbf),sub({LEEWAY_S}),sub(txn.now) gt 0 }}",
        f"    {_problem(401, 'token issuer is not trusted', invalid)} unless "
        f"{{ var(txn.token),jwt_payload_query('$.iss') -m str {ident['issuer']} }}",
        # json_query returns no sample for an array, so a token with a list of audiences is refused here
        # (the gateway accepts a list holding ours); the dev IdP and Auth0's access tokens use a string.
        f"    {_problem(401, 'token audience is not accepted here', invalid)} unless "
        f"{{ var(txn.token),jwt_payload_query('$.aud') -m str {ident['audience']} }}",
    ]
    if limit:
        window_s = max(1, round(limit["burst"] / limit["requests_per_second"]))
        lines += [
            "    http-request track-sc0 var(txn.sub) table viewers",
            f"    {_problem(429, 'rate limit exceeded', f' hdr retry-after {window_s}')} "
            f"if {{ sc_http_req_rate(0) gt {limit['burst']} }}",
        ]
    lines += [
        "    http-request set-var-fmt(txn.msg) \"v1\\n%[var(txn.now)]\\n%[method]\\n%[path]\\n%[var(txn.token)]\"",
        "    http-request set-header x-edge-proof "
        f"\"v1.%[var(txn.now)].%[var(txn.msg),hmac(sha256,{key_b64}),hex,lower]\"",
        "    http-request set-header x-forwarded-proto http",
        "    default_backend upstream",
        "",
        "backend upstream",
        "    http-reuse always",
        *[f"    server s{i} {u} maxconn 500" for i, u in enumerate(upstreams)],
    ]
    if limit:
        window_s = max(1, round(limit["burst"] / limit["requests_per_second"]))
        lines += ["", "backend viewers",
                  f"    stick-table type string len 128 size 200k expire {window_s * 2}s "
                  f"store http_req_rate({window_s}s)"]
    return "\n".join(lines) + "\n"
