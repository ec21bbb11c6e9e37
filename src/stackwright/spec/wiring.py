"""The environment a service process gets, from the spec plus where it runs.

The local runner and the Kubernetes renderer both call :func:`service_env`, so the variable names
(the contract in :mod:`stackwright.contract`) and their derivation from the spec exist once;
only the addresses differ (loopback ports locally, cluster DNS and AWS names on EKS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..contract import PLATFORM_PORT_ENV, PUBLISHED_PATHS_ENV, resource_env, service_url_env
from ..resources import kind_of
from .model import System
from .quantities import bytes_size


@dataclass(frozen=True)
class Placement:
    """Where one replica runs."""

    environment: str
    region: str
    region_role: str
    host: str
    port: int
    jwks_url: str | None
    shutdown_grace_s: int
    extra: Mapping[str, str] = field(default_factory=dict)
    #: Port of the platform's endpoints (metrics, readiness, API docs; see stackwright.runtime.serve), and
    #: the ones of them a spec route publishes (the edge's view: stackwright.deploy.routes.published_paths).
    platform_port: int | None = None
    published: tuple[str, ...] = ()


def service_env(system: System, service: str, place: Placement, *, resource_urls: Mapping[str, str],
                queue_names: Mapping[str, str], service_urls: Mapping[str, str]) -> dict[str, str]:
    """Every plain (non-secret) environment variable of one replica of ``service``.

    ``resource_urls`` holds the URL of each resource that is a plain setting where it runs (resources
    whose URL carries credentials are left out by the caller and come from secrets); ``queue_names``
    the real name of each resource whose kind needs one besides its URL (queues); ``service_urls``
    the base URL of each called service. What else a used resource adds is its kind's
    :meth:`~stackwright.resources.ResourceKind.env`.
    """
    svc = system.services[service]
    env: dict[str, str] = {
        "SERVICE_NAME": service,
        "SYSTEM_NAME": system.name,
        "ENVIRONMENT": place.environment,
        "REGION": place.region,
        "REGION_ROLE": place.region_role,
        **place.extra,
        "HOST": place.host,
        "PORT": str(place.port),
        **({PLATFORM_PORT_ENV: str(place.platform_port)} if place.platform_port else {}),
        **({PUBLISHED_PATHS_ENV: ",".join(place.published)} if place.published else {}),
        "SHUTDOWN_GRACE_SECONDS": str(place.shutdown_grace_s),
        "MAX_BODY_BYTES": str(bytes_size(system.edge.max_body)),
    }
    ident = system.edge.identity
    if ident is not None and place.jwks_url:
        env.update({
            "JWT_ISSUER": ident.issuer,
            "JWT_AUDIENCE": ident.audience,
            "JWT_ALGORITHMS": ",".join(ident.algorithms),
            "JWT_ROLES_CLAIM": ident.roles_claim,
            "JWKS_URL": place.jwks_url,
        })
    for name in svc.uses:
        res = system.resources[name]
        if name in resource_urls:
            env[resource_env(name)] = resource_urls[name]
        kind = kind_of(res)
        env.update(kind.env(name, res, real_name=queue_names.get(name)))
        env.update(kind.service_env(system, service, name, res, real_name=queue_names.get(name)))
    for called in svc.calls:
        env[service_url_env(called)] = service_urls[called]
    env.update(svc.env)
    return env
