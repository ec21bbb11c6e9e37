"""JWT verification against a JWKS: cached keys, an algorithm allow-list, issuer/audience/expiry checks.

Used by services (defence in depth) and by the local edge gateway. Every failure is a 401 with a reason;
nothing here ever raises anything but :class:`AuthError` for a bad token.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})


class AuthError(Exception):
    """The token is missing or not acceptable; ``str(exc)`` says why (safe to show the caller)."""


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    sub: str
    roles: frozenset[str]
    claims: dict[str, Any] = field(hash=False, compare=False)

    def has_roles(self, required: list[str] | tuple[str, ...]) -> bool:
        return all(r in self.roles for r in required)


class JWKSCache:
    """Fetches a JWKS document and keeps keys by ``kid``; refetches on an unknown kid, at most every 10 s."""

    def __init__(self, url: str, *, ttl_s: float = 300.0, min_refresh_s: float = 10.0) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.min_refresh_s = min_refresh_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.generation = 0  # bumped at every fetch, so verdicts reached with older keys are checked again

    async def key(self, kid: str | None) -> Any:
        now = time.monotonic()
        if kid in self._keys and now - self._fetched_at < self.ttl_s:
            return self._keys[kid]
        if kid not in self._keys or now - self._fetched_at >= self.ttl_s:
            async with self._lock:
                if now - self._fetched_at >= self.min_refresh_s or not self._keys:
                    await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        try:
            return self._keys[kid]
        except KeyError:
            raise AuthError("token signed with an unknown key id") from None

    async def _refresh(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.get(self.url)
                resp.raise_for_status()
                doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            if self._keys:
                return  # keep serving with the keys we have
            raise AuthError(f"cannot fetch signing keys: {exc.__class__.__name__}") from None
        self._keys = self.parse(doc)
        self.generation += 1
        self._fetched_at = time.monotonic()

    @staticmethod
    def parse(doc: dict[str, Any]) -> dict[str, Any]:
        """Turn a JWKS document into {kid: public key}."""
        keys: dict[str, Any] = {}
        for jwk in doc.get("keys", []):
            kty = jwk.get("kty")
            if kty == "RSA":
                keys[jwk.get("kid", "")] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            elif kty == "EC":
                keys[jwk.get("kid", "")] = ECAlgorithm.from_jwk(json.dumps(jwk))
        return keys


class JWTVerifier:
    """Verify bearer tokens: signature by JWKS, algorithm in the allow-list, iss, aud, exp, nbf.

    A token that verified once is remembered (up to ``cache_size`` tokens) until it expires: a viewer sends
    the same token with every request, and the RSA check plus PyJWT's decoding (~90 µs) was the largest
    single cost of a vote. A remembered token is still refused once expired, and every remembered verdict is
    dropped when the signing keys change (a rotated-out key stops being trusted at the next JWKS refresh).
    """

    def __init__(self, *, jwks_url: str, issuer: str, audience: str, algorithms: list[str] | None = None,
                 roles_claim: str = "roles", leeway_s: float = 5.0, cache_size: int = 20_000) -> None:
        allowed = [a for a in (algorithms or ["RS256"]) if a in ASYMMETRIC]
        if not allowed:
            raise ValueError("at least one asymmetric algorithm (e.g. RS256) must be allowed")
        self.algorithms = allowed
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self.leeway_s = leeway_s
        self.jwks = JWKSCache(jwks_url)
        self.cache_size = cache_size
        self._verified: dict[str, tuple[Principal, float, int]] = {}

    async def verify(self, token: str) -> Principal:
        """Return the caller for a valid token, or raise AuthError."""
        hit = self._verified.get(token)
        if hit is not None:
            who, exp, generation = hit
            if generation == self.jwks.generation and time.time() < exp + self.leeway_s:
                return who
            del self._verified[token]
        who = await self._verify_signed(token)
        if self.cache_size > 0:
            if len(self._verified) >= self.cache_size:
                # Oldest first (dicts keep insertion order): cheap, and a busy viewer re-enters at once.
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (who, float(who.claims["exp"]), self.jwks.generation)
        return who

    async def _verify_signed(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            # Blocks alg=none and HS256-with-the-public-key confusion before any key is touched.
            raise AuthError(f"token algorithm {alg!r} is not allowed")
        key = await self.jwks.key(header.get("kid"))
        try:
            claims = jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway_s, options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is not accepted here") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is not trusted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature does not verify") from None
        except jwt.PyJWTError:
            raise AuthError("token is not valid") from None
        roles = claims.get(self.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        return Principal(sub=str(claims["sub"]), roles=frozenset(map(str, roles)), claims=claims)


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer ...`` header value."""
    if not authorization:
        raise AuthError("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("authorization header must be 'Bearer <token>'")
    return token.strip()
