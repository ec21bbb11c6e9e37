"""The system's namespace with Pod Security Standards "restricted" enforced, and its guards: a
ResourceQuota sized from the spec's maximum replicas and a LimitRange with defaults."""

from __future__ import annotations

import math
from typing import Any

from ...spec.accelerators import gpus_per_pod
from ...spec.quantities import cpu_millis, memory_mib
from .context import Target, obj

#: Quota headroom over max replicas x requests: rolling-update surge and canary pods.
QUOTA_HEADROOM = 1.5
#: Room for migration Jobs and one-off pods.
EXTRA_PODS = 10


def namespace(t: Target) -> dict[str, Any]:
    """Namespace labelled for PSS restricted (enforce/audit/warn) and ALB pod readiness gates."""
    version = f"v{t.system.cluster.kubernetes_version}"
    labels = {
        **t.labels(component="namespace"),
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": version,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": version,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": version,
        "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
    }
    return obj("v1", "Namespace", {"name": t.namespace, "labels": labels})


def resource_quota(t: Target) -> dict[str, Any]:
    """Quota = headroom x the sum over services of max replicas x requests (and memory limits)."""
    cpu = mem = mem_limit = gpus = pods = 0.0
    for name, svc in t.system.services.items():
        _, high = t.replicas(name)
        cpu += high * cpu_millis(svc.resources.cpu)
        mem += high * memory_mib(svc.resources.memory)
        mem_limit += high * memory_mib(svc.resources.effective_memory_limit)
        gpus += high * gpus_per_pod(svc)
        pods += high
    hard = {
        "pods": str(math.ceil(pods * QUOTA_HEADROOM) + EXTRA_PODS),
        "requests.cpu": f"{math.ceil(cpu * QUOTA_HEADROOM / 1000) + 2}",
        "requests.memory": f"{math.ceil(mem * QUOTA_HEADROOM / 1024) + 4}Gi",
        "limits.memory": f"{math.ceil(mem_limit * QUOTA_HEADROOM / 1024) + 4}Gi",
    }
    if gpus:
        hard["requests.nvidia.com/gpu"] = str(math.ceil(gpus * QUOTA_HEADROOM))
    return obj("v1", "ResourceQuota", t.meta(t.system.name, component="namespace"), spec={"hard": hard})


def limit_range(t: Target) -> dict[str, Any]:
    """Defaults for any container that does not say (every rendered one does)."""
    limits = [{
        "type": "Container",
        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        "default": {"memory": "256Mi"},
    }]
    return obj("v1", "LimitRange", t.meta(t.system.name, component="namespace"), spec={"limits": limits})


def objects(t: Target) -> list[dict[str, Any]]:
    """Namespace, ResourceQuota, LimitRange."""
    return [namespace(t), resource_quota(t), limit_range(t)]
