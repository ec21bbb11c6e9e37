"""Database migrations on EKS: one Job per Postgres resource with a ``migrations`` folder, run by CI in
the primary region before the services roll out.

The Job runs in the image of a service that uses the database (its Dockerfile copies the migrations
to ``/app/migrations/<resource>``) and applies them with :func:`stackwright.runtime.db.apply_migrations`
(each file once, under an advisory lock), reading the URL from that service's ESO-managed Secret.
"""

from __future__ import annotations

from typing import Any

from ...contract import resource_env
from ...deploy import names as naming
from ...resources import kind_of
from ...spec import System
from .context import Target, obj
from .secrets import secret_name
from .workload import pod_security

MIGRATIONS_ROOT = "/app/migrations"

_SCRIPT = (
    "import asyncio, os, pathlib\n"
    "from stackwright.runtime.db import apply_migrations\n"
    "folder = pathlib.Path(os.environ['MIGRATIONS_DIR'])\n"
    "files = [(p.name, p.read_text()) for p in sorted(folder.glob('*.sql'))]\n"
    "applied = asyncio.run(apply_migrations(os.environ['DATABASE_URL'], files))\n"
    "print('applied:', ', '.join(applied) or 'nothing new')\n"
)


def migrated_databases(system: System) -> dict[str, str]:
    """``resource -> service whose image and secret the migration Job uses`` (first user, spec order).

    Per-tenant databases are left out: their schema is applied when a tenant is created.
    """
    out: dict[str, str] = {}
    for name, res in system.resources.items():
        if not kind_of(res).migrated_at_deploy(res):
            continue
        user = next((s for s, svc in system.services.items() if name in svc.uses), None)
        if user is not None:
            out[name] = user
    return out


def job_name(resource: str) -> str:
    """Name of the migration Job (and its ServiceAccount) of a database."""
    return f"migrate-{resource}"


def migration_job(t: Target, resource: str, service: str) -> dict[str, Any]:
    """The Job applying one database's migrations."""
    security = {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
        "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": pod_security()["runAsUser"],
        "runAsGroup": pod_security()["runAsGroup"], "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": "migrate",
        "image": f"{naming.image_name(t.system, service)}:{naming.BASE_IMAGE_TAG}",
        "imagePullPolicy": "Always",
        "command": ["python", "-c", _SCRIPT],
        "env": [
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
                "name": secret_name(service), "key": resource_env(resource)}}},
            {"name": "MIGRATIONS_DIR", "value": f"{MIGRATIONS_ROOT}/{resource}"},
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": security,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    labels = t.labels(component="migration")
    pod = {
        "metadata": {"labels": {**labels, "app.kubernetes.io/name": job_name(resource)}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": job_name(resource),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(),
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }
    spec = {"backoffLimit": 2, "activeDeadlineSeconds": 900, "ttlSecondsAfterFinished": 86400, "template": pod}
    return obj("batch/v1", "Job", t.meta(job_name(resource), component="migration"), spec=spec)


def objects(t: Target) -> list[dict[str, Any]]:
    """ServiceAccount (no AWS role) + Job for every migrated database."""
    out: list[dict[str, Any]] = []
    for resource, service in migrated_databases(t.system).items():
        sa = obj("v1", "ServiceAccount", t.meta(job_name(resource), component="migration"),
                 automountServiceAccountToken=False)
        out += [sa, migration_job(t, resource, service), network_policy(t, resource)]
    return out


def network_policy(t: Target, resource: str) -> dict[str, Any]:
    """The migration pod may reach PostgreSQL in the VPC (and nothing else beyond DNS)."""
    spec = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": job_name(resource)}},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": t.region.vpc_cidr}}], "ports": [{"port": 5432, "protocol": "TCP"}]}],
    }
    return obj("networking.k8s.io/v1", "NetworkPolicy", t.meta(job_name(resource), component="migration"),
               spec=spec)
