"""The pods of one service: ServiceAccount (IRSA), Deployment, ClusterIP Service.

Every pod runs under the Pod Security Standards "restricted" profile with a read-only root filesystem,
a writable emptyDir on /tmp, probes on the runtime's /healthz and /readyz, requests and a memory limit.

Each container has two ports: ``http`` (the application, what Services and load balancers send traffic
to) and ``platform`` (metrics, readiness, liveness, API docs; see :mod:`stackwright.runtime.serve`), which
only kubelet's probes, the load balancers' health checks and Prometheus reach, on the pod's own address.
"""

from __future__ import annotations

from typing import Any

from ...contract import CONTAINER_PLATFORM_PORT, PLATFORM_PATHS
from ...deploy import names as naming
from ...spec.accelerators import gpus_per_pod
from ...spec.model import Probe, Service
from ...spec.quantities import cpu_millis, seconds
from ...spec.shutdown import termination
from .config import checksum, config_name, settings
from .context import RUN_AS, Target, obj
from .rollout import HASH_LABEL as ROLLOUT_HASH_LABEL
from .secrets import has_secrets, secret_name

TMP_SIZE = "256Mi"
GPU_RESOURCE = "nvidia.com/gpu"
CONFIG_CHECKSUM = "stackwright.io/config-checksum"
#: Label the ReplicaSet controller puts on the pods of one Deployment revision.
DEPLOYMENT_HASH_LABEL = "pod-template-hash"


def uses_autoscaler(t: Target, service: str) -> bool:
    """Whether an HPA (or a KEDA ScaledObject) owns the replica count of a service."""
    svc = t.service(service)
    low, high = t.replicas(service)
    a = svc.autoscale
    if a is not None and a.keda:
        return True
    if low == high:
        return False
    if a is None:
        return True  # the spec's default autoscale (CPU 70%)
    return a.cpu_percent is not None or a.memory_percent is not None


def is_canary(svc: Service) -> bool:
    """Whether a service is released as an Argo Rollouts canary."""
    return svc.rollout.strategy == "canary"


def service_account(t: Target, service: str) -> dict[str, Any]:
    """A dedicated ServiceAccount bound to the service's own IAM role (IRSA)."""
    annotations = None
    if naming.WORKLOAD_IDENTITY == "irsa":
        annotations = {
            "eks.amazonaws.com/role-arn": naming.service_role_arn(t.system, t.environment, t.region.name, service),
            "eks.amazonaws.com/sts-regional-endpoints": "true",
        }
    meta = t.meta(service, service, annotations=annotations)
    return obj("v1", "ServiceAccount", meta, automountServiceAccountToken=False)


#: Name of the container port serving the platform's endpoints.
PLATFORM_PORT_NAME = "platform"


def probe_port(path: str) -> str:
    """The container port (name) that serves ``path``: the platform port for the runtime's endpoints, the
    application port for a path of the app's own (fastapi-app's ``/health``)."""
    return PLATFORM_PORT_NAME if path in PLATFORM_PATHS else "http"


def _probe(p: Probe) -> dict[str, Any]:
    return {
        "httpGet": {"path": p.path, "port": probe_port(p.path), "scheme": "HTTP"},
        "initialDelaySeconds": p.initial_delay_s,
        "periodSeconds": p.period_s,
        "timeoutSeconds": p.timeout_s,
        "failureThreshold": p.failure_threshold,
        "successThreshold": 1,
    }


def _startup(svc: Service) -> dict[str, Any]:
    if svc.probes.startup is not None:
        return _probe(svc.probes.startup)
    # Slow starts (pool warm-up, migrations checks) get up to 150 s before liveness applies.
    return _probe(Probe(path=svc.probes.liveness.path, period_s=5, timeout_s=2, failure_threshold=30))


def _resources(svc: Service) -> dict[str, Any]:
    r = svc.resources
    requests: dict[str, Any] = {"cpu": r.cpu, "memory": r.memory}
    limits: dict[str, Any] = {"memory": r.effective_memory_limit}
    if r.cpu_limit is not None:
        limits["cpu"] = r.cpu_limit
    gpus = gpus_per_pod(svc)
    if gpus:
        requests[GPU_RESOURCE] = gpus
        limits[GPU_RESOURCE] = gpus
    return {"requests": requests, "limits": limits}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    """Pod-level securityContext of the PSS "restricted" profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def env_from(t: Target, service: str) -> list[dict[str, Any]]:
    """ConfigMap settings, then the ESO-managed Secret (when the service has secrets)."""
    sources: list[dict[str, Any]] = [{"configMapRef": {"name": config_name(service)}}]
    if has_secrets(t, service):
        sources.append({"secretRef": {"name": secret_name(service)}})
    return sources


def container(t: Target, service: str) -> dict[str, Any]:
    """The one application container of a service."""
    svc = t.service(service)
    return {
        "name": service,
        "image": f"{naming.image_name(t.system, service)}:{naming.BASE_IMAGE_TAG}",
        "imagePullPolicy": "Always",
        "ports": [{"name": "http", "containerPort": svc.port, "protocol": "TCP"},
                  {"name": PLATFORM_PORT_NAME, "containerPort": CONTAINER_PLATFORM_PORT, "protocol": "TCP"}],
        "envFrom": env_from(t, service),
        "resources": _resources(svc),
        "livenessProbe": _probe(svc.probes.liveness),
        "readinessProbe": _probe(svc.probes.readiness),
        "startupProbe": _startup(svc),
        # Keeps serving until the ALB has deregistered the pod (see stackwright.spec.shutdown).
        "lifecycle": {"preStop": {"sleep": {"seconds": termination(t.system, service).prestop_sleep_s}}},
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def template_hash_label(svc: Service) -> str:
    """The label a service's controller stamps on each revision's pods: ``pod-template-hash`` for a
    Deployment's ReplicaSets, ``rollouts-pod-template-hash`` for an Argo Rollout's."""
    return ROLLOUT_HASH_LABEL if is_canary(svc) else DEPLOYMENT_HASH_LABEL


def topology_spread(t: Target, service: str) -> list[dict[str, Any]]:
    """Spread replicas evenly over zones (hard) and nodes (soft); failed nodes do not count.

    ``matchLabelKeys`` (on by default since Kubernetes 1.27) counts only pods of the incoming pod's
    own revision: without it, old and new pods are counted together during a surge, the zone skew of
    the new revision is judged against the old one and new pods stay Pending."""
    selector = {"matchLabels": t.selector(service)}
    revision = [template_hash_label(t.service(service))]
    return [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
         "nodeTaintsPolicy": "Honor", "labelSelector": selector, "matchLabelKeys": revision},
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": selector, "matchLabelKeys": revision},
    ]


def pod_template(t: Target, service: str) -> dict[str, Any]:
    """Pod template shared by the Deployment (and, through workloadRef, the Rollout)."""
    svc = t.service(service)
    spec: dict[str, Any] = {
        "serviceAccountName": service,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination(t.system, service).grace_s,
        "securityContext": pod_security(),
        "topologySpreadConstraints": topology_spread(t, service),
        "containers": [container(t, service)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}],
    }
    if svc.node_pool:
        spec["nodeSelector"] = {naming.NODE_POOL_LABEL: svc.node_pool}
    pool = next((p for p in t.system.cluster.node_pools if p.name == svc.node_pool), None)
    if gpus_per_pod(svc) or (pool is not None and pool.gpu):
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    if svc.accelerator is not None and pool is not None:
        # Besides the pool label: only instance types carrying the model (validated when the spec loads), so a
        # pool later given another family cannot place the pod on the wrong GPU.
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                   "values": list(pool.instance_types)}]}]}}}
    annotations = {CONFIG_CHECKSUM: checksum(settings(t, service))}
    return {"metadata": {"labels": t.labels(service), "annotations": annotations}, "spec": spec}


def deployment(t: Target, service: str) -> dict[str, Any]:
    """The Deployment of a service. For canaries it only holds the pod template (replicas 0) that the
    Argo Rollout runs through ``workloadRef``."""
    svc = t.service(service)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": t.selector(service)},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 600,
        "minReadySeconds": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": pod_template(t, service),
    }
    annotations: dict[str, str] | None = None
    if is_canary(svc):
        spec["replicas"] = 0
        annotations = {"stackwright.io/managed-by-rollout": service}
    elif not uses_autoscaler(t, service):
        spec["replicas"] = t.replicas(service)[0]
    return obj("apps/v1", "Deployment", t.meta(service, service, annotations=annotations), spec=spec)


def cluster_service(t: Target, service: str) -> dict[str, Any]:
    """ClusterIP Service in front of a service's pods: port ``http``, and ``platform``, the one Prometheus
    scrapes (cluster-internal: this Service is never a load balancer; NetworkPolicy admits only the
    monitoring namespace and the VPC's load balancer health checks to it)."""
    svc = t.service(service)
    spec = {
        "type": "ClusterIP",
        "selector": t.selector(service),
        "ports": [{"name": "http", "port": svc.service_port, "targetPort": "http", "protocol": "TCP"},
                  {"name": PLATFORM_PORT_NAME, "port": CONTAINER_PLATFORM_PORT, "targetPort": PLATFORM_PORT_NAME,
                   "protocol": "TCP"}],
    }
    return obj("v1", "Service", t.meta(service, service), spec=spec)


def cpu_request_m(svc: Service) -> int:
    """CPU request of a service in millicores (used by quotas)."""
    return cpu_millis(svc.resources.cpu)


def pause_seconds(text: str) -> int:
    """A spec duration in whole seconds."""
    return int(seconds(text))
