"""Kubernetes manifests for a system: built as plain dicts per region and environment, written as a
kustomize base plus one overlay per region x environment.

``build_manifests(system, region, environment)`` is the one source of truth: the base is the build for
the primary region in production, and every overlay holds exactly the differences of its own build.
"""

from __future__ import annotations

from typing import Any

from ...spec import System
from ..errors import RenderError
from . import ingress, namespace, network, observability, scaling, secrets, workload
from .config import config_map
from .context import Target, key
from .rollout import analysis_template, rollout

#: Policy names reserved for the namespace-wide NetworkPolicies.
RESERVED = frozenset({"default-deny", "allow-dns"})


def service_objects(t: Target, service: str) -> list[dict[str, Any]]:
    """Everything one service needs, in apply order."""
    svc = t.service(service)
    out: list[dict[str, Any]] = [workload.service_account(t, service), config_map(t, service)]
    out += secrets.objects(t, service)
    out.append(workload.deployment(t, service))
    if workload.is_canary(svc):
        fixed = None if workload.uses_autoscaler(t, service) else t.replicas(service)[0]
        out += [analysis_template(t, service), rollout(t, service, fixed)]
    cluster = workload.cluster_service(t, service)
    if service in ingress.routed_services(t):
        cluster["metadata"]["annotations"] = ingress.target_group_annotations(t, service)
    out.append(cluster)
    if svc.expose == "load-balancer":
        out.append(ingress.load_balancer_service(t, service))
    out += scaling.objects(t, service)
    out.append(network.service_policy(t, service))
    return out


def build_components(system: System, region: str, environment: str) -> dict[str, list[dict[str, Any]]]:
    """Objects grouped by the base file they are written to (``namespace``, ``services/<svc>`` ...)."""
    t = Target.of(system, region, environment)
    clash = RESERVED & set(system.services)
    if clash:
        raise RenderError(f"service name {sorted(clash)[0]!r} is reserved for a namespace NetworkPolicy; rename it")
    components: dict[str, list[dict[str, Any]]] = {
        "namespace": namespace.objects(t),
        "network-policies": network.namespace_policies(t),
    }
    for name in system.services:
        components[f"services/{name}"] = service_objects(t, name)
    edge = ingress.ingress(t)
    if edge is not None:
        components["ingress"] = [edge]
    monitoring = observability.objects(t)
    if monitoring:
        components["monitoring"] = monitoring
    _check_unique([o for objs in components.values() for o in objs])
    return components


def build_manifests(system: System, region: str, environment: str) -> list[dict[str, Any]]:
    """Every Kubernetes object deployed to the cluster of one region and environment, in apply order."""
    return [o for objs in build_components(system, region, environment).values() for o in objs]


def migration_manifests(system: System, environment: str) -> list[dict[str, Any]]:
    """The migration Jobs (with their ServiceAccounts and NetworkPolicies), run in the primary region."""
    from . import migrations

    return migrations.objects(Target.of(system, system.primary_region.name, environment))


def _check_unique(objects: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for o in objects:
        k = key(o)
        if k in seen:
            raise RenderError(f"two objects would both be {k[1]} '{k[2]}'; rename a service so names do not clash")
        seen.add(k)


def render_k8s(system: System) -> dict[str, str]:
    """The ``k8s/`` tree (base, overlays, migrations) as ``relative path -> text``."""
    from .kustomize import render_tree

    return render_tree(system)


__all__ = ["Target", "build_components", "build_manifests", "migration_manifests", "render_k8s"]
