"""Per-service settings: the ConfigMap of plain settings (the env-var wiring contract of
:mod:`stackwright.runtime.settings`) and which variables come from secrets instead."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...runtime.settings import resource_env, service_url_env
from ...spec.quantities import bytes_size, seconds
from .. import naming
from .context import Target, obj

#: Resource kinds whose ``<NAME>_URL`` carries credentials and so comes from Secrets Manager. Queues
#: (``sqs://?region=...`` + ``<NAME>_QUEUE``), buckets (``s3://``) and topics (ARN) are plain settings.
SECRET_URL_KINDS = frozenset({"postgres", "redis", "search"})


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
    env: dict[str, str] = {
        "SERVICE_NAME": service,
        "SYSTEM_NAME": system.name,
        "ENVIRONMENT": t.environment,
        "REGION": t.region.name,
        "REGION_ROLE": t.region.role,
        "AWS_REGION": t.region.name,
        "AWS_DEFAULT_REGION": t.region.name,
        "HOST": "0.0.0.0",
        "PORT": str(svc.port),
        "LOG_LEVEL": "info",
        "SHUTDOWN_GRACE_SECONDS": str(svc.graceful_shutdown_s),
        "MAX_BODY_BYTES": str(bytes_size(system.edge.max_body)),
    }
    ident = system.edge.identity
    if ident is not None:
        env.update({
            "JWT_ISSUER": ident.issuer,
            "JWT_AUDIENCE": ident.audience,
            "JWT_ALGORITHMS": ",".join(ident.algorithms),
            "JWT_ROLES_CLAIM": ident.roles_claim,
            "JWKS_URL": jwks_url(ident.issuer),
        })
    for name in svc.uses:
        res = system.resources[name]
        if res.kind == "postgres":
            env[resource_env(name, "POOL_MIN")] = str(res.pool.min)
            env[resource_env(name, "POOL_MAX")] = str(res.pool.max)
        elif res.kind == "queue":
            env[resource_env(name)] = f"sqs://?region={naming.hosting_region(system, name, t.region.name)}"
            env[resource_env(name, "QUEUE")] = naming.queue_name(system, t.environment, name)
            env[resource_env(name, "MAX_RECEIVE")] = str(res.max_receive_count)
            env[resource_env(name, "VISIBILITY_TIMEOUT")] = str(int(seconds(res.visibility_timeout)))
        elif res.kind == "bucket":
            region = naming.hosting_region(system, name, t.region.name)
            env[resource_env(name)] = f"s3://{naming.bucket_name(system, t.environment, name, region)}"
        elif res.kind == "topic":
            env[resource_env(name)] = naming.topic_arn(system, t.environment, name, t.region.name)
    for called in svc.calls:
        env[service_url_env(called)] = service_url(t, called)
    env.update(svc.env)
    return env


def secret_refs(t: Target, service: str) -> dict[str, tuple[str, str]]:
    """Secret environment variables: ``VAR -> (Secrets Manager secret name, JSON property)``."""
    refs: dict[str, tuple[str, str]] = {}
    for name in t.service(service).uses:
        res = t.system.resources[name]
        if res.kind not in SECRET_URL_KINDS:
            continue
        secret, prop = naming.resource_secret(t.system, t.environment, name, service)
        refs[resource_env(name)] = (secret, prop)
        if res.kind == "postgres" and t.region.role != "primary":
            refs[resource_env(name, "READ_URL")] = (secret, "read_url")
    return refs


def config_map(t: Target, service: str) -> dict[str, Any]:
    """The ConfigMap a service's pods load with ``envFrom``."""
    return obj("v1", "ConfigMap", t.meta(config_name(service), service), data=settings(t, service))


def checksum(data: dict[str, Any]) -> str:
    """Stable hash of settings, put on the pod template so a settings change rolls the pods."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
