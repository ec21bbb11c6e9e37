"""Environment each local service process gets: the same variables the EKS manifests inject
(:func:`stackwright.spec.wiring.service_env`), with loopback addresses."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..deploy.routes import published_paths
from ..resources import kind_of
from ..spec import System
from ..spec.wiring import Placement
from ..spec.wiring import service_env as spec_service_env


@dataclass
class Endpoints:
    """Where the local backing services and service replicas listen."""

    gateway_url: str
    resource_urls: dict[str, str] = field(default_factory=dict)
    service_urls: dict[str, list[str]] = field(default_factory=dict)
    #: Per replica (same order as ``service_urls``): base URL of its platform port (metrics, readiness, docs).
    platform_urls: dict[str, list[str]] = field(default_factory=dict)


def service_env(system: System, name: str, endpoints: Endpoints, *, port: int,
                platform_port: int | None = None) -> dict[str, str]:
    """All environment variables for one replica of service ``name`` (``platform_port``: where its metrics,
    readiness and API docs are served; None: on ``port`` with the rest)."""
    ident = system.edge.identity
    jwks = f"{endpoints.gateway_url}{ident.local_mount.rstrip('/')}/.well-known/jwks.json" if ident else None
    place = Placement(environment="local", region=system.primary_region.name, region_role="primary",
                      host="127.0.0.1", port=port, jwks_url=jwks, shutdown_grace_s=5,
                      platform_port=platform_port, published=published_paths(system, name))
    queues = {n: real for n, r in system.resources.items() if (real := kind_of(r).local_name(system, n)) is not None}
    return spec_service_env(system, name, place, resource_urls=endpoints.resource_urls, queue_names=queues,
                            service_urls={s: urls[0] for s, urls in endpoints.service_urls.items()})
