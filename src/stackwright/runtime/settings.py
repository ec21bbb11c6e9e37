"""12-factor wiring: the environment variables a service reads, named the same locally and on EKS.

The names come from :mod:`stackwright.contract` (:func:`resource_env` / :func:`service_url_env`), which the
local runner and the Kubernetes renderer use too, so a service never knows where it runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..contract import EDGE_PROOF_ENV, env_key, resource_env, service_url_env

__all__ = ["MissingSetting", "Settings", "env_key", "resource_env", "service_url_env"]


class MissingSetting(RuntimeError):
    """A required environment variable is not set; the message names it."""


@dataclass
class Settings:
    """What every service knows about itself, read once from the environment."""

    service: str
    system: str
    environment: str = "local"
    region: str = "local"
    region_role: str = "primary"
    port: int = 8000
    log_level: str = "info"
    shutdown_grace_s: float = 10.0
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_url: str | None = None
    jwt_algorithms: list[str] = field(default_factory=lambda: ["RS256"])
    jwt_roles_claim: str = "roles"
    # Verified tokens remembered: ~2.2 KB each (tracemalloc: 1.5 KB of claims + the token), ~44 MB at the default.
    jwt_cache_size: int = 20_000
    # The per-run secret of the local edge's proofs (runtime.auth.EdgeProof); unset on rendered deployments.
    edge_proof_secret: str | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``os.environ`` (or the mapping given)."""
        e = dict(os.environ if environ is None else environ)
        return cls(
            service=e.get("SERVICE_NAME", "service"),
            system=e.get("SYSTEM_NAME", "system"),
            environment=e.get("ENVIRONMENT", "local"),
            region=e.get("REGION", "local"),
            region_role=e.get("REGION_ROLE", "primary"),
            port=int(e.get("PORT", "8000")),
            log_level=e.get("LOG_LEVEL", "info"),
            shutdown_grace_s=float(e.get("SHUTDOWN_GRACE_SECONDS", "10")),
            jwt_issuer=e.get("JWT_ISSUER"),
            jwt_audience=e.get("JWT_AUDIENCE"),
            jwks_url=e.get("JWKS_URL"),
            jwt_algorithms=[a for a in e.get("JWT_ALGORITHMS", "RS256").split(",") if a],
            jwt_roles_claim=e.get("JWT_ROLES_CLAIM", "roles"),
            jwt_cache_size=int(e.get("JWT_CACHE_SIZE", "20000") or 20000),
            edge_proof_secret=e.get(EDGE_PROOF_ENV) or None,
            env=e,
        )

    def resource_url(self, resource: str) -> str:
        """Connection URL of a backing resource this service uses (``uses:`` in the spec)."""
        key = resource_env(resource)
        try:
            return self.env[key]
        except KeyError:
            raise MissingSetting(f"{key} is not set: does the spec list '{resource}' under uses?") from None

    def resource_setting(self, resource: str, suffix: str, default: str | None = None) -> str | None:
        """Another attribute of a resource, e.g. ``resource_setting('votes', 'MAX_RECEIVE')``."""
        return self.env.get(resource_env(resource, suffix), default)

    def service_url(self, service: str) -> str:
        """Base URL of a service this one calls (``calls:`` in the spec)."""
        key = service_url_env(service)
        try:
            return self.env[key].rstrip("/")
        except KeyError:
            raise MissingSetting(f"{key} is not set: does the spec list '{service}' under calls?") from None

    def get(self, key: str, default: str | None = None) -> str | None:
        """A service-specific setting from the spec's ``env:`` block."""
        return self.env.get(key, default)
