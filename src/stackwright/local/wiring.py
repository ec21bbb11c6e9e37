"""Environment each local service process gets: the same variables the EKS manifests inject
(:func:`stackwright.spec.wiring.service_env`), with loopback addresses."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def service_env(system: System, name: str, endpoints: Endpoints, *, port: int) -> dict[str, str]:
    """All environment variables for one replica of service ``name``."""
    ident = system.edge.identity
    jwks = f"{endpoints.gateway_url}{ident.local_mount.rstrip('/')}/.well-known/jwks.json" if ident else None
    place = Placement(environment="local", region=system.primary_region.name, region_role="primary",
                      host="127.0.0.1", port=port, jwks_url=jwks, shutdown_grace_s=5)
    queues = {n: real for n, r in system.resources.items() if (real := kind_of(r).local_name(system, n)) is not None}
    return spec_service_env(system, name, place, resource_urls=endpoints.resource_urls, queue_names=queues,
                            service_urls={s: urls[0] for s, urls in endpoints.service_urls.items()})
