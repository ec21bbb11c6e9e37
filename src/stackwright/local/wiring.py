"""Environment each local service process gets: the same variable names the EKS manifests inject."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..runtime.settings import resource_env, service_url_env
from ..spec import System
from ..spec.quantities import bytes_size, seconds


@dataclass
class Endpoints:
    """Where the local backing services and service replicas listen."""

    gateway_url: str
    resource_urls: dict[str, str] = field(default_factory=dict)
    service_urls: dict[str, list[str]] = field(default_factory=dict)


def service_env(system: System, name: str, endpoints: Endpoints, *, port: int) -> dict[str, str]:
    """All environment variables for one replica of service ``name``."""
    svc = system.services[name]
    env: dict[str, str] = {
        "SERVICE_NAME": name,
        "SYSTEM_NAME": system.name,
        "ENVIRONMENT": "local",
        "REGION": system.primary_region.name,
        "REGION_ROLE": "primary",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHUTDOWN_GRACE_SECONDS": "5",
        "MAX_BODY_BYTES": str(bytes_size(system.edge.max_body)),
    }
    ident = system.edge.identity
    if ident is not None:
        env.update({
            "JWT_ISSUER": ident.issuer,
            "JWT_AUDIENCE": ident.audience,
            "JWT_ALGORITHMS": ",".join(ident.algorithms),
            "JWT_ROLES_CLAIM": ident.roles_claim,
            "JWKS_URL": f"{endpoints.gateway_url}{ident.local_mount.rstrip('/')}/.well-known/jwks.json",
        })
    for res_name in svc.uses:
        res = system.resources[res_name]
        env[resource_env(res_name)] = endpoints.resource_urls[res_name]
        if res.kind == "postgres":
            env[resource_env(res_name, "POOL_MIN")] = str(res.pool.min)
            env[resource_env(res_name, "POOL_MAX")] = str(res.pool.max)
        elif res.kind == "queue":
            env[resource_env(res_name, "QUEUE")] = f"{system.name}-{res_name}"
            env[resource_env(res_name, "MAX_RECEIVE")] = str(res.max_receive_count)
            env[resource_env(res_name, "VISIBILITY_TIMEOUT")] = str(int(seconds(res.visibility_timeout)))
    for called in svc.calls:
        env[service_url_env(called)] = endpoints.service_urls[called][0]
    env.update(svc.env)
    return env
