"""The Kubernetes objects of one region's deployment, with their purpose.

The list is exactly what ``render`` emits (kind + metadata.name), from
``stackwright.render.k8s.build_manifests(system, region, environment)``: render is the one authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..resources import KINDS
from ..spec import System
from .model import K8sObject

NLB_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-type"
#: Resource kinds whose URL is a credential kept in Secrets Manager (one secret per resource and region).
SECRET_KINDS = frozenset(k for k, impl in KINDS.items() if impl.plan_secret)


@dataclass(frozen=True)
class Disruption:
    """What a service's PodDisruptionBudget allows, as rendered."""

    min_available: int | str | None
    max_unavailable: int | str | None


@dataclass(frozen=True)
class Workloads:
    """Kubernetes objects of one region plus the facts other sections read from them."""

    objects: list[K8sObject]
    source: str
    lb_kinds: dict[str, str]
    pdbs: dict[str, Disruption]
    spread_across_zones: dict[str, bool]


def _render_manifests(system: System, region: str, environment: str) -> list[dict[str, Any]]:
    # Imported on use: render.k8s is the heavier half and plan's other sections do not need it.
    from ..render.k8s import build_manifests

    return list(build_manifests(system, region, environment))


def _purpose(system: System, kind: str, name: str, manifest: dict[str, Any] | None = None) -> str:
    svc_name = next((s for s in sorted(system.services, key=len, reverse=True)
                     if name == s or name.startswith(f"{s}-") or name.endswith(f"-{s}")), None)
    svc = system.services.get(svc_name) if svc_name else None
    named = {"default-deny": "denies pod traffic that no policy allows",
             "allow-dns": "lets every pod reach cluster DNS"}
    if name in named:
        return named[name]
    if kind == "ConfigMap" and name.endswith("-dashboard"):
        return "Grafana dashboard (loaded by the dashboard sidecar)"
    if svc is None:
        generic = {"Ingress": "ALB routing rules for every routed service", "Namespace": "the system's namespace",
                   "ResourceQuota": "caps the namespace's total CPU, memory and object counts",
                   "LimitRange": "default requests/limits for containers that set none",
                   "ConfigMap": "shared configuration", "NetworkPolicy": "allowed traffic between pods",
                   "ServiceMonitor": "Prometheus scrapes every service's /metrics",
                   "PrometheusRule": "SLO burn-rate, latency and queue alerts",
                   "ExternalSecret": "credentials from Secrets Manager",
                   "SecretStore": "where ExternalSecrets read from (Secrets Manager)",
                   "ClusterSecretStore": "where ExternalSecrets read from (Secrets Manager)"}
        return generic.get(kind, kind)
    service_type = ((manifest or {}).get("spec") or {}).get("type") if kind == "Service" else None
    rng = f"{svc.replicas.min}-{svc.replicas.max} replicas"
    text = {
        "Deployment": f"{svc.description or svc_name} ({rng})",
        "Rollout": f"{svc.description or svc_name} ({rng}, canary "
                   + " -> ".join(f"{s.weight}%" for s in svc.rollout.steps) + ")",
        "Service": ("internet-facing load balancer in front of " if service_type == "LoadBalancer" or
                    (manifest is None and svc.expose == "load-balancer") else "ClusterIP for ") + svc_name,
        "TriggerAuthentication": f"KEDA reads the queue depth with {svc_name}'s IAM role",
        "HorizontalPodAutoscaler": f"scales {svc_name} {rng} at {svc.autoscale.cpu_percent}% CPU"
        if svc.autoscale and svc.autoscale.cpu_percent else f"scales {svc_name} ({rng})",
        "ScaledObject": f"KEDA: scales {svc_name} {rng} on queue depth "
                        f"({svc.autoscale.queue}, {svc.autoscale.target_queue_depth} per replica)"
        if svc.autoscale and svc.autoscale.queue else
        f"KEDA: scales {svc_name} {rng} on {svc.autoscale.metric.name} ({svc.autoscale.metric.target:g} per replica)"
        if svc.autoscale and svc.autoscale.metric else f"KEDA: scales {svc_name}",
        "PodDisruptionBudget": f"keeps {svc_name} serving during node drains",
        "ConfigMap": f"environment of {svc_name} (12-factor settings)",
        "ExternalSecret": "credentials of " + (", ".join(u for u in svc.uses if system.resources[u].kind in
                                                         SECRET_KINDS) or svc_name) + " from Secrets Manager",
        "SecretStore": f"Secrets Manager in this region, read as {svc_name}'s ServiceAccount",
        "ServiceAccount": f"IRSA identity of {svc_name} (its IAM role)",
        "ServiceMonitor": f"Prometheus scrapes {svc_name} /metrics",
        "PodMonitor": f"Prometheus scrapes {svc_name} pods' /metrics",
        "AnalysisTemplate": f"canary analysis of {svc_name}: error rate, p99, success-rate drop",
        "Ingress": f"ALB routes to {svc_name}",
        "NetworkPolicy": f"who may talk to {svc_name}",
    }
    return text.get(kind, f"{kind} of {svc_name}")


def workloads(system: System, environment: str) -> Workloads:
    """Objects of the primary region's deployment, as render builds them."""
    region = system.primary_region.name
    manifests = _render_manifests(system, region, environment)
    lb_kinds = {n: "clb" for n, s in system.services.items() if s.expose == "load-balancer"}
    pdbs: dict[str, Disruption] = {}
    spread: dict[str, bool] = {}
    objects = []
    for m in manifests:
        kind, meta = m.get("kind", "?"), m.get("metadata", {}) or {}
        name = str(meta.get("name", "?"))
        objects.append(K8sObject(kind, name, _purpose(system, kind, name, m)))
        spec = m.get("spec", {}) or {}
        target = _selected_service(system, spec.get("selector") or {}) if kind == "Service" else None
        if kind == "Service" and spec.get("type") == "LoadBalancer" and target in lb_kinds:
            ann = (meta.get("annotations") or {}).get(NLB_ANNOTATION, "")
            lb_kinds[target] = "nlb" if ann in ("nlb", "external", "nlb-ip") else "clb"
        if kind == "PodDisruptionBudget":
            selected = _selected_service(system, (spec.get("selector") or {}).get("matchLabels") or {}) or name
            pdbs[selected] = Disruption(spec.get("minAvailable"), spec.get("maxUnavailable"))
        if kind in ("Deployment", "Rollout"):
            pod = ((spec.get("template") or {}).get("spec") or {})
            constraints = pod.get("topologySpreadConstraints") or []
            zoned = any(c.get("topologyKey") == "topology.kubernetes.io/zone" for c in constraints)
            spread[name] = spread.get(name, False) or zoned  # a Rollout may reference the Deployment's template
    source = f"stackwright.render.k8s.build_manifests({system.name}, {region}, {environment})"
    return Workloads(objects, source, lb_kinds, pdbs, spread)


def _selected_service(system: System, labels: dict[str, Any]) -> str | None:
    """The spec service a label selector picks (by the value of any of its labels)."""
    for value in labels.values():
        if isinstance(value, str) and value in system.services:
            return str(value)
    return None
