"""JWT verification against a JWKS: cached keys, an algorithm allow-list, issuer/audience/expiry checks.

Used by services (defence in depth) and by the local edge gateway. Every failure is a 401 with a reason;
nothing here ever raises anything but :class:`AuthError` for a bad token.
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ..http_client import async_client

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
# RS* (PKCS#1 v1.5) tokens are checked with one `cryptography` call instead of PyJWT (see _verify_rsa).
_RSA_HASH: dict[str, type[hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS384": hashes.SHA384,
                                                    "RS512": hashes.SHA512}
_B64URL = bytes.maketrans(b"-_", b"+/")


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

    async def prime(self) -> bool:
        """Fetch the keys now (a service's start-up), so its first caller does not wait for them. False, and the
        first caller fetches them instead, when the document cannot be had."""
        async with self._lock:
            try:
                await self._refresh(timeout_s=2.0)
            except AuthError:
                return False
        return bool(self._keys)

    async def _refresh(self, timeout_s: float = 5.0) -> None:
        try:
            async with async_client(timeout=timeout_s) as client:
                resp = await client.get(self.url)
                resp.raise_for_status()
                doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            if self._keys:
                return  # keep serving with the keys we have
            raise AuthError(f"cannot fetch signing keys: {exc.__class__.__name__}") from None
        self.load(doc)

    def load(self, doc: dict[str, Any]) -> None:
        """Take the keys of a JWKS document as if just fetched (a process that holds the document itself)."""
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
        # An OrderedDict, not a dict: evicting the oldest of a plain dict (``del d[next(iter(d))]``) scans the
        # tombstones the earlier evictions left at its front, ~37 us per insert once it is full and every token
        # is new (20,000 entries, 300,000 fresh tokens); popitem(last=False) is O(1), ~2 us all told.
        self._verified: OrderedDict[str, tuple[Principal, float, int]] = OrderedDict()

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
                # Oldest first: cheap, and a busy viewer re-enters at once.
                self._verified.popitem(last=False)
            self._verified[token] = (who, float(who.claims["exp"]), self.jwks.generation)
        return who

    async def _verify_signed(self, token: str) -> Principal:
        header, signing_input, signature, payload = _split(token)
        alg = header.get("alg")
        if alg not in self.algorithms:
            # Blocks alg=none and HS256-with-the-public-key confusion before any key is touched.
            raise AuthError(f"token algorithm {alg!r} is not allowed")
        key = await self.jwks.key(header.get("kid"))
        if alg in _RSA_HASH and isinstance(key, RSAPublicKey):
            claims = self._verify_rsa(key, alg, signing_input, signature, payload)
        else:
            claims = self._verify_pyjwt(token, key)
        return self._principal(claims)

    def edge_verified(self, token: str) -> Principal:
        """The caller of a token whose signature the edge verified (see :class:`EdgeProof`): its claims are
        still checked here, so expiry, issuer and audience hold exactly as after :meth:`verify`."""
        claims = EdgeProof.claims(token)
        self.check_claims(claims)
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        roles = claims.get(self.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        return Principal(sub=str(claims["sub"]), roles=frozenset(map(str, roles)), claims=claims)

    def _verify_rsa(self, key: RSAPublicKey, alg: str, signing_input: bytes, signature: bytes,
                    payload: bytes) -> dict[str, Any]:
        """RS256/384/512 with one OpenSSL call, then the same claim checks as :meth:`_verify_pyjwt`.

        Measured on the 2-vCPU bench machine (one 2048-bit key, 3,000 dev tokens): PyJWT's ``decode`` took
        ~310-440 us per token under load and this ~110-130 us; OpenSSL's RSA verify is most of what is left.
        PyJWT re-parses the header, re-checks the algorithm against the key and builds option dicts per call.
        """
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), _RSA_HASH[alg]())
        except InvalidSignature:
            raise AuthError("token signature does not verify") from None
        claims = _claims_object(payload)
        self.check_claims(claims)
        return claims

    def check_claims(self, claims: dict[str, Any], now: float | None = None) -> None:
        """The registered claims PyJWT checks with our options: required exp/iat/sub/iss/aud, exp and nbf
        (with leeway), iat not in the future, issuer, audience (a string or a list holding ours), and the
        types PyJWT 2.10+ enforces (numeric dates, string sub and jti). Raises AuthError."""
        for claim in ("exp", "iat", "sub", "iss", "aud"):
            if claims.get(claim) is None:  # PyJWT's "require" counts a null claim as missing too
                raise AuthError(f"token lacks the {claim!r} claim")
        now = time.time() if now is None else now
        for claim in ("exp", "iat", "nbf"):
            value = claims.get(claim)
            # PyJWT takes int(value), so it also accepts true (1) and numeric strings; the latter are refused here.
            if claim in claims and not isinstance(value, int | float):
                raise AuthError("token is not valid")
        if claims["exp"] <= now - self.leeway_s:
            raise AuthError("token has expired")
        if claims["iat"] > now + self.leeway_s or claims.get("nbf", 0) > now + self.leeway_s:
            raise AuthError("token is not valid yet")
        if not isinstance(claims["sub"], str) or not isinstance(claims.get("jti", ""), str):
            raise AuthError("token is not valid")
        if claims["iss"] != self.issuer:
            raise AuthError("token issuer is not trusted")
        aud = claims["aud"]
        auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds) or self.audience not in auds:
            raise AuthError("token audience is not accepted here")

    def _verify_pyjwt(self, token: str, key: Any) -> dict[str, Any]:
        """Every other allowed algorithm (EC, RSASSA-PSS), through PyJWT."""
        try:
            return jwt.decode(
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


def _b64url(segment: str) -> bytes:
    """Strict base64url (RFC 7515 section 2): no padding in the token, nothing outside the alphabet."""
    raw = segment.encode("ascii").translate(_B64URL)
    return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)


def _claims_object(payload: bytes) -> dict[str, Any]:
    """A token's decoded payload as a JSON object (AuthError when it is not one)."""
    try:
        claims = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise AuthError("token is not valid") from None
    if not isinstance(claims, dict):
        raise AuthError("token is not valid")
    return claims


def _split(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """A compact JWS: (header, signing input, signature, payload bytes); AuthError when malformed."""
    try:
        head, payload, signature = token.split(".")
        header = orjson.loads(_b64url(head))
        parts = (header, f"{head}.{payload}".encode("ascii"), _b64url(signature), _b64url(payload))
    except (ValueError, UnicodeError, binascii.Error, orjson.JSONDecodeError):
        raise AuthError("malformed token") from None
    if not isinstance(header, dict) or "=" in token:
        raise AuthError("malformed token")
    return parts


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer ...`` header value."""
    if not authorization:
        raise AuthError("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("authorization header must be 'Bearer <token>'")
    return token.strip()


class EdgeProof:
    """An HMAC-SHA256 proof, added by the edge, that it verified this request's bearer token.

    A token verified at the edge was verified a second time by the service (defence in depth), and with a
    fresh token per request that doubled the RSA work of every request. Managed edges pass their verdict
    on instead (API Gateway's JWT authorizer hands the claims to the integration; an ALB with OIDC signs
    them in ``x-amzn-oidc-data``). Here the gateway signs, with a secret the runner generates per run and
    gives only to the gateway and the services:

        v1 "." <unix seconds> "." hex(HMAC-SHA256(secret, "v1\\n" ts "\\n" METHOD "\\n" raw path "\\n" token))

    so a proof is bound to one method, path and token and is refused ``max_age_s`` after it was made. A
    service that checks it skips the RSA verify but still decodes the token's claims and checks them
    (:meth:`JWTVerifier.check_claims`: expiry, issuer, audience), so an expired token is refused even with a
    fresh proof. Within ``max_age_s`` the same proof re-sent with the same request is accepted: that is
    exactly what the bearer token already allows its holder (and the gateway may resend an idempotent
    request whose connection died); a request that must happen once stays once by its own de-duplication.
    """

    VERSION = "v1"

    def __init__(self, secret: str | bytes, *, max_age_s: float = 30.0) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the edge proof secret must be at least 16 bytes")
        self._key = key
        self.max_age_s = max_age_s

    def _mac(self, stamp: str, method: str, path: bytes, token: str) -> str:
        msg = b"%s\n%s\n%s\n%s\n%s" % (self.VERSION.encode(), stamp.encode(), method.encode(), path, token.encode())
        # hmac.digest is one C call; hmac.new(...).hexdigest() built a Python HMAC object (~3% of the
        # gateway's and a service's samples under py-spy at ~500 requests/s with fresh tokens).
        return hmac.digest(self._key, msg, "sha256").hex()

    def sign(self, method: str, path: bytes, token: str, now: float | None = None) -> str:
        """The proof header value for a request whose token the caller has verified."""
        stamp = str(int(time.time() if now is None else now))
        return f"{self.VERSION}.{stamp}.{self._mac(stamp, method, path, token)}"

    def check(self, proof: str, method: str, path: bytes, token: str, now: float | None = None) -> None:
        """Raise AuthError unless ``proof`` was made with our secret for this method, path and token, and
        no more than ``max_age_s`` seconds ago (or in the future by more than that: clocks of one machine)."""
        version, _, rest = proof.partition(".")
        stamp, _, mac = rest.partition(".")
        if version != self.VERSION or not stamp.isdigit() or not mac:
            raise AuthError("malformed edge proof")
        if not hmac.compare_digest(mac, self._mac(stamp, method, path, token)):
            raise AuthError("edge proof does not match this request")
        if abs((time.time() if now is None else now) - int(stamp)) > self.max_age_s:
            raise AuthError("edge proof is too old")

    @staticmethod
    def claims(token: str) -> dict[str, Any]:
        """The claims of a token whose signature the edge verified (AuthError when malformed).

        Only the payload is decoded: the proof is bound to this exact token string, whose header (algorithm)
        and signature the edge checked, so decoding them again would be work without a verdict.
        """
        parts = token.split(".")
        if len(parts) != 3 or "=" in token:
            raise AuthError("malformed token")
        try:
            payload = _b64url(parts[1])
        except (ValueError, UnicodeError, binascii.Error):
            raise AuthError("malformed token") from None
        return _claims_object(payload)
