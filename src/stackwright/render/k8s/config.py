"""Per-service settings: the ConfigMap of plain settings (the env-var wiring contract of
:mod:`stackwright.runtime.settings`) and which variables come from secrets instead."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...contract import CONTAINER_PLATFORM_PORT, resource_env
from ...deploy import names as naming
from ...deploy.placement import hosting_region
from ...deploy.routes import published_paths
from ...resources import KINDS, kind_of
from ...spec.shutdown import termination
from ...spec.wiring import Placement, service_env
from .context import Target, obj

#: Resource kinds whose ``<NAME>_URL`` carries credentials and so comes from Secrets Manager. Queues
#: (``sqs://?region=...`` + ``<NAME>_QUEUE``), buckets (``s3://``) and topics (ARN) are plain settings.
SECRET_URL_KINDS = frozenset(k for k, impl in KINDS.items() if impl.credential_url)


def config_name(service: str) -> str:
    """Name of a service's ConfigMap."""
    return f"{service}-config"


def jwks_url(issuer: str) -> str:
    """Where an OIDC issuer (Auth0, Cognito) publishes its signing keys."""
    return issuer.rstrip("/") + "/.well-known/jwks.json"


def service_url(t: Target, service: str) -> str:
    """In-cluster base URL of a service (its ClusterIP Service)."""
    svc = t.service(service)
    port = "" if svc.service_port == 80 else f":{svc.service_port}"
    return f"http://{service}.{t.namespace}.svc.cluster.local{port}"


def settings(t: Target, service: str) -> dict[str, str]:
    """Every non-secret environment variable of one service in this region/environment."""
    system, svc = t.system, t.service(service)
    ident = system.edge.identity
    place = Placement(
        environment=t.environment, region=t.region.name, region_role=t.region.role, host="0.0.0.0",
        port=svc.port, jwks_url=jwks_url(ident.issuer) if ident else None,
        shutdown_grace_s=termination(system, service).drain_s,
        platform_port=CONTAINER_PLATFORM_PORT, published=published_paths(system, service),
        extra={"AWS_REGION": t.region.name, "AWS_DEFAULT_REGION": t.region.name, "LOG_LEVEL": "info"})
    plain: dict[str, str] = {}
    queues: dict[str, str] = {}
    for name, res in system.resources.items():
        kind = kind_of(res)
        hosted = hosting_region(system, name, t.region.name)
        url = kind.eks_url(system, t.environment, name, res, region=t.region.name, hosted=hosted)
        if url is not None:
            plain[name] = url
        real = kind.eks_name(system, t.environment, name, res)
        if real is not None:
            queues[name] = real
    return service_env(system, service, place, resource_urls=plain, queue_names=queues,
                       service_urls={s: service_url(t, s) for s in svc.calls})


def secret_refs(t: Target, service: str) -> dict[str, tuple[str, str]]:
    """Secret environment variables: ``VAR -> (Secrets Manager secret name, JSON property)``."""
    refs: dict[str, tuple[str, str]] = {}
    for name in t.service(service).uses:
        res = t.system.resources[name]
        kind = kind_of(res)
        if not kind.credential_url:
            continue
        secret, prop = naming.resource_secret(t.system, t.environment, name, service)
        refs[resource_env(name)] = (secret, prop)
        for suffix, extra in kind.secret_props(name, res, primary_region=t.region.role == "primary").items():
            refs[resource_env(name, suffix)] = (secret, extra)
    return refs


def config_map(t: Target, service: str) -> dict[str, Any]:
    """The ConfigMap a service's pods load with ``envFrom``."""
    return obj("v1", "ConfigMap", t.meta(config_name(service), service), data=settings(t, service))


def checksum(data: dict[str, Any]) -> str:
    """Stable hash of settings, put on the pod template so a settings change rolls the pods."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
