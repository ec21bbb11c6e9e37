"""How many replicas a service runs: HPA (CPU/memory), KEDA ScaledObject on SQS depth for queue
workers or on a Prometheus metric (``autoscale.metric``), fixed replicas when min == max, and a
PodDisruptionBudget consistent with the minimum."""

from __future__ import annotations

from typing import Any

from ...deploy import names as naming
from ...deploy.placement import hosting_region
from ...spec.model import Autoscale
from .context import Target, obj
from .rollout import ROLLOUTS_API
from .workload import is_canary, uses_autoscaler

KEDA_API = "keda.sh/v1alpha1"
SCALE_DOWN_WINDOW_S = 300


def scale_target(t: Target, service: str) -> dict[str, str]:
    """What the autoscaler scales: the Rollout for canaries, else the Deployment."""
    if is_canary(t.service(service)):
        return {"apiVersion": ROLLOUTS_API, "kind": "Rollout", "name": service}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}


def _behavior() -> dict[str, Any]:
    return {
        "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S,
                      "policies": [{"type": "Percent", "value": 20, "periodSeconds": 60}]},
        "scaleUp": {"stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30},
                                 {"type": "Pods", "value": 4, "periodSeconds": 30}],
                    "selectPolicy": "Max"},
    }


def _autoscale(t: Target, service: str) -> Autoscale:
    return t.service(service).autoscale or Autoscale()


def hpa(t: Target, service: str) -> dict[str, Any]:
    """autoscaling/v2 HPA on CPU (and memory) utilisation of the requests."""
    a = _autoscale(t, service)
    low, high = t.replicas(service)
    metrics = []
    for name, target in (("cpu", a.cpu_percent), ("memory", a.memory_percent)):
        if target is not None:
            metrics.append({"type": "Resource", "resource": {
                "name": name, "target": {"type": "Utilization", "averageUtilization": target}}})
    spec = {"scaleTargetRef": scale_target(t, service), "minReplicas": max(low, 1), "maxReplicas": high,
            "metrics": metrics, "behavior": _behavior()}
    return obj("autoscaling/v2", "HorizontalPodAutoscaler", t.meta(service, service), spec=spec)


def trigger_auth_name(service: str) -> str:
    """KEDA TriggerAuthentication of a worker."""
    return f"{service}-aws"


def trigger_authentication(t: Target, service: str) -> dict[str, Any]:
    """KEDA reads queue attributes as the worker's scaler role, which the AWS app makes trusting the
    KEDA operator's own ServiceAccount and allows only ``sqs:GetQueueAttributes`` on that queue
    (``identityOwner: workload`` would need the worker's role to trust the operator, which it does not)."""
    arn = naming.scaler_role_arn(t.system, t.environment, t.region.name, service)
    spec = {"podIdentity": {"provider": "aws", "roleArn": arn}}
    return obj(KEDA_API, "TriggerAuthentication", t.meta(trigger_auth_name(service), service), spec=spec)


def metric_query(t: Target, service: str) -> str:
    """PromQL of a service's ``autoscale.metric``: the spec's query, or the metric summed over the series
    scraped from the service's pods. Those are matched by namespace and container (the container is named
    after the service), the two labels the Prometheus Operator sets on ServiceMonitor and PodMonitor
    targets alike (workers have no Service, so no ``service`` label)."""
    m = _autoscale(t, service).metric
    assert m is not None
    return m.query or f'sum({m.name}{{namespace="{t.namespace}",container="{service}"}})'


def _external_trigger(t: Target, service: str) -> dict[str, Any]:
    a = _autoscale(t, service)
    if a.metric is not None:
        # KEDA computes replicas = ceil(query value / threshold); in-cluster Prometheus needs no auth.
        return {"type": "prometheus", "metadata": {
            "serverAddress": t.system.monitoring.prometheus_url, "query": metric_query(t, service),
            "threshold": f"{a.metric.target:g}"}}
    assert a.queue is not None and a.target_queue_depth is not None
    return {
        "type": "aws-sqs-queue",
        "authenticationRef": {"name": trigger_auth_name(service)},
        "metadata": {
            "queueURL": naming.queue_name(t.system, t.environment, a.queue),
            "queueLength": str(a.target_queue_depth),
            "awsRegion": hosting_region(t.system, a.queue, t.region.name),
            "scaleOnInFlight": "true",
        },
    }


def scaled_object(t: Target, service: str) -> dict[str, Any]:
    """KEDA ScaledObject: queue depth per replica (aws-sqs-queue) or a Prometheus metric per replica,
    plus CPU when the spec asks."""
    a = _autoscale(t, service)
    low, high = t.replicas(service)
    triggers: list[dict[str, Any]] = [_external_trigger(t, service)]
    if a.cpu_percent is not None:
        triggers.append({"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(a.cpu_percent)}})
    if a.memory_percent is not None:
        triggers.append({"type": "memory", "metricType": "Utilization",
                         "metadata": {"value": str(a.memory_percent)}})
    spec = {
        "scaleTargetRef": scale_target(t, service),
        "minReplicaCount": low,
        "maxReplicaCount": high,
        "pollingInterval": 15,
        "cooldownPeriod": SCALE_DOWN_WINDOW_S,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior()}},
        "triggers": triggers,
    }
    return obj(KEDA_API, "ScaledObject", t.meta(service, service), spec=spec)


def pdb_min_available(min_replicas: int) -> int | None:
    """PDB minAvailable for a minimum replica count, always below it so node drains can proceed
    (2 -> 1, 3 -> 2, 10 -> 8); None for a single replica (then maxUnavailable: 1)."""
    if min_replicas < 2:
        return None
    return min_replicas - max(1, min_replicas // 4)


def pdb(t: Target, service: str) -> dict[str, Any]:
    """PodDisruptionBudget consistent with the minimum replica count."""
    low, _ = t.replicas(service)
    spec: dict[str, Any] = {"selector": {"matchLabels": t.selector(service)},
                            "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    available = pdb_min_available(low)
    if available is None:
        spec["maxUnavailable"] = 1
    else:
        spec["minAvailable"] = available
    return obj("policy/v1", "PodDisruptionBudget", t.meta(service, service), spec=spec)


def objects(t: Target, service: str) -> list[dict[str, Any]]:
    """Autoscaler objects and the PDB of a service."""
    out: list[dict[str, Any]] = []
    a = _autoscale(t, service)
    if a.queue:
        out += [trigger_authentication(t, service), scaled_object(t, service)]
    elif a.metric:
        out.append(scaled_object(t, service))
    elif uses_autoscaler(t, service):
        out.append(hpa(t, service))
    out.append(pdb(t, service))
    return out
