"""Credentials only through the External Secrets Operator: one SecretStore per service (its own IRSA
role, so a service can read only its own resources' secrets) and one ExternalSecret per service."""

from __future__ import annotations

from typing import Any

from ...deploy import names as naming
from .config import secret_refs
from .context import Target, obj

ESO_API = "external-secrets.io/v1"
REFRESH = "1h"


def secret_name(service: str) -> str:
    """Kubernetes Secret the ExternalSecret of a service materialises."""
    return f"{service}-secrets"


def has_secrets(t: Target, service: str) -> bool:
    """Whether a service reads anything from Secrets Manager."""
    return bool(secret_refs(t, service))


def secret_store(t: Target, service: str) -> dict[str, Any]:
    """SecretStore reading AWS Secrets Manager in this region as the service's own ServiceAccount."""
    aws: dict[str, Any] = {"service": "SecretsManager", "region": t.region.name}
    if naming.WORKLOAD_IDENTITY == "irsa":
        aws["auth"] = {"jwt": {"serviceAccountRef": {"name": service}}}
    # With EKS Pod Identity, ESO must not name a service account (it uses its own identity).
    spec = {"provider": {"aws": aws}}
    return obj(ESO_API, "SecretStore", t.meta(service, service), spec=spec)


def external_secret(t: Target, service: str) -> dict[str, Any]:
    """ExternalSecret mapping each secret variable to a property of a Secrets Manager secret."""
    data = [{"secretKey": var, "remoteRef": {"key": key, "property": prop}}
            for var, (key, prop) in sorted(secret_refs(t, service).items())]
    spec = {
        "refreshInterval": REFRESH,
        "secretStoreRef": {"kind": "SecretStore", "name": service},
        "target": {"name": secret_name(service), "creationPolicy": "Owner", "deletionPolicy": "Retain"},
        "data": data,
    }
    return obj(ESO_API, "ExternalSecret", t.meta(service, service), spec=spec)


def objects(t: Target, service: str) -> list[dict[str, Any]]:
    """SecretStore + ExternalSecret of a service (none when it uses no secret)."""
    if not has_secrets(t, service):
        return []
    return [secret_store(t, service), external_secret(t, service)]
