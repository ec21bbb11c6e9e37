"""The dev identity provider: stands in for Auth0/Cognito with RS256 tokens and a published JWKS.

Tokens carry the production issuer and audience from the spec, so services verify them exactly as they
would verify the real provider's.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..runtime.problems import problem_response

SUB_RE = re.compile(r"^[A-Za-z0-9_.:@|-]{1,128}$")
ROLE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: What ``POST {mount}/dev/token`` takes.
TOKEN_FIELDS = frozenset({"sub", "roles", "ttl_s", "claims"})
#: Claims the token sets itself, never taken from ``claims`` (nor from ``token --claim``).
RESERVED_CLAIMS = frozenset({"iss", "aud", "sub", "iat", "nbf", "exp", "jti"})


class DevIdP:
    """Holds one RSA signing key (persisted) and mints tokens for any subject and roles."""

    def __init__(self, key_file: Path, *, issuer: str, audience: str, roles_claim: str = "roles") -> None:
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self.key = _load_or_create_key(key_file)
        public = self.key.public_key()
        self.kid = _kid(public)
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        self.jwks = {"keys": [jwk]}

    def mint(self, sub: str, roles: list[str] | None = None, *, ttl_s: int = 3600,
             extra: dict[str, Any] | None = None) -> str:
        """A signed access token for ``sub`` with ``roles``."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "nbf": now,
                  "exp": now + ttl_s, "jti": uuid.uuid4().hex, self.roles_claim: roles or []}
        claims.update(extra or {})
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def routes(self, mount: str) -> list[Route]:
        """Starlette routes: ``{mount}/dev/token``, ``{mount}/.well-known/jwks.json``, OIDC discovery."""
        mount = mount.rstrip("/")

        async def token(request: Request) -> Response:
            try:
                body = await request.json()
            except ValueError:
                return problem_response(400, "request body is not valid JSON")
            if not isinstance(body, dict):
                return problem_response(422, "body must be a JSON object with 'sub' and optional 'roles'")
            unknown = sorted(set(body) - TOKEN_FIELDS)
            if unknown:  # e.g. {"tenant_id": ...} at the top: silently dropped, the token lacked the claim
                return problem_response(422, f"unknown field(s) {', '.join(map(repr, unknown))}; the body takes "
                                             f"{', '.join(sorted(TOKEN_FIELDS))} (extra claims go in 'claims')")
            sub, roles, ttl = body.get("sub"), body.get("roles", []), body.get("ttl_s", 3600)
            claims = body.get("claims", {})
            if not isinstance(sub, str) or not SUB_RE.fullmatch(sub):
                return problem_response(422, "'sub' must be 1-128 characters of [A-Za-z0-9_.:@|-]")
            if not isinstance(roles, list) or not all(isinstance(r, str) and ROLE_RE.fullmatch(r) for r in roles):
                return problem_response(422, "'roles' must be a list of lower-case role names")
            if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 86400:
                return problem_response(422, "'ttl_s' must be an integer from 1 to 86400")
            if not isinstance(claims, dict) or not all(
                    isinstance(v, str | int | bool) and not isinstance(v, float) for v in claims.values()):
                return problem_response(422, "'claims' must be an object of string, integer or boolean values")
            taken = sorted(set(claims) & (RESERVED_CLAIMS | {self.roles_claim}))
            if taken:
                return problem_response(422, f"claim(s) {', '.join(map(repr, taken))} are set by the token itself")
            return JSONResponse({"access_token": self.mint(sub, roles, ttl_s=ttl, extra=claims), "token_type": "Bearer",
                                 "expires_in": ttl, "issuer": self.issuer, "audience": self.audience})

        async def jwks(request: Request) -> Response:
            return JSONResponse(self.jwks, headers={"Cache-Control": "public, max-age=300"})

        async def discovery(request: Request) -> Response:
            base = str(request.base_url).rstrip("/")
            return JSONResponse({"issuer": self.issuer, "jwks_uri": f"{base}{mount}/.well-known/jwks.json",
                                 "token_endpoint": f"{base}{mount}/dev/token",
                                 "id_token_signing_alg_values_supported": ["RS256"]})

        return [
            Route(f"{mount}/dev/token", token, methods=["POST"]),
            Route(f"{mount}/.well-known/jwks.json", jwks, methods=["GET"]),
            Route(f"{mount}/.well-known/openid-configuration", discovery, methods=["GET"]),
        ]


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


def _kid(public: rsa.RSAPublicKey) -> str:
    import hashlib

    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]
