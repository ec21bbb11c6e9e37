"""Service accelerators (``accelerator: {type, count}``): pairing with a GPU node pool validated with
file:line, the pod's GPU limit, toleration and node affinity, and the GPU pool sized by whole GPUs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.spec import SpecError, load_system
from tests.fixtures.load import edited, fixture, line_of


def _pod(system, service: str) -> dict:
    objs = build_manifests(system, "us-east-1", "prod")
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == service)["spec"][
        "template"]["spec"]


def test_pod_gets_gpu_limit_toleration_and_affinity() -> None:
    pod = _pod(fixture("gpu"), "transcriber")
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"stackwright.io/node-pool": "gpu"}
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                         "values": ["g4dn.xlarge"]}]
    api = _pod(fixture("gpu"), "api")
    assert "affinity" not in api and "nvidia.com/gpu" not in api["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["services"]["transcriber"]["accelerator"].update(type="nvidia-a10g"),
     "needs an nvidia-a10g but node pool 'gpu' has g4dn.xlarge (nvidia-t4)"),
    (lambda s: s["services"]["transcriber"].pop("node_pool"), "does not run on a node pool with gpu: true"),
    (lambda s: s["services"]["transcriber"]["accelerator"].update(count=2),
     "needs 2 GPUs per pod but g4dn.xlarge has 1"),
    (lambda s: s["cluster"]["node_pools"][1].update(gpu=False), "does not run on a node pool with gpu: true"),
])
def test_pairing_is_validated_with_the_line(tmp_path: Path, edit, message: str) -> None:
    path = edited("gpu", tmp_path, edit)
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, 'accelerator:')}" in str(info.value)


def test_unknown_accelerator_type_is_refused(tmp_path: Path) -> None:
    path = edited("gpu", tmp_path, lambda s: s["services"]["transcriber"]["accelerator"].update(type="tpu"))
    with pytest.raises(SpecError, match=r"system\.yaml:\d+: .*accelerator\.type"):
        load_system(path)


def test_plan_sizes_and_prices_the_gpu_pool_by_whole_gpus(tmp_path: Path) -> None:
    # 4 pods x 1 GPU at replicas.max on 1-GPU g4dn.xlarge nodes: 4 nodes, though CPU/memory would fit in 3.
    plan = build_plan(fixture("gpu"))
    pool = next(p for p in plan.capacity.pools if p.pool == "gpu")
    assert pool.nodes_for_max_replicas == 4 and pool.nodes_for_min_replicas == 2
    line = next(ln for ln in plan.cost.lines if ln.item.startswith("Nodes gpu:"))
    assert line.item == "Nodes gpu: 2 x g4dn.xlarge (on-demand)" and line.monthly_usd > 0


def test_custom_metric_autoscale_is_a_keda_prometheus_trigger() -> None:
    objs = build_manifests(fixture("gpu"), "us-east-1", "prod")
    (scaled,) = [o for o in objs if o["kind"] == "ScaledObject"]
    assert scaled["metadata"]["name"] == "transcriber"
    (trigger,) = scaled["spec"]["triggers"]  # cpu_percent: null, so the metric alone
    assert trigger == {"type": "prometheus", "metadata": {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
        "query": 'sum(transcriber_streams_active{namespace="gpu",container="transcriber"})', "threshold": "8"}}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 4)
    assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == "transcriber"]
    deployment = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "transcriber")
    assert "replicas" not in deployment["spec"]  # KEDA owns the count


def test_custom_metric_scaled_object_passes_the_vendored_crd_schema() -> None:
    pytest.importorskip("jsonschema")
    from stackwright.render.checks import crd_schemas, validate_schemas

    assert ("keda.sh/v1alpha1", "ScaledObject") in crd_schemas()
    objs = [o for o in build_manifests(fixture("gpu"), "us-east-1", "prod") if o["kind"] == "ScaledObject"]
    _, crds = validate_schemas({"gpu": objs})
    assert crds.ok and crds.passed == 1, crds


def test_metric_autoscale_needs_prometheus(tmp_path: Path) -> None:
    path = edited("gpu", tmp_path, lambda s: s["monitoring"].update(prometheus=False))
    with pytest.raises(SpecError, match=r"monitoring\.prometheus is off") as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, 'metric:')}" in str(info.value)


def test_queue_and_metric_are_exclusive(tmp_path: Path) -> None:
    def both(spec: dict) -> None:
        spec["services"]["transcriber"]["autoscale"].update(queue="x", target_queue_depth=5)

    with pytest.raises(SpecError, match="a queue or on a metric, not both"):
        load_system(edited("gpu", tmp_path, both))
