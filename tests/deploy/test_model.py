"""The resolved deployment model: one default environment, one AZ table, bucket names checked once,
standby scale in manifests and plan alike, and bucket replicas priced where CDK creates them."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from stackwright.deploy import DeployError, default_environment, names, resolve
from stackwright.deploy.scale import replicas
from stackwright.plan import build_plan
from stackwright.plan import default_environment as plan_default
from stackwright.render.k8s import build_manifests
from stackwright.render.k8s.kustomize import base_target
from stackwright.spec import System
from tests.plan.specs import SEED_003, make_system


def _standby(**region: Any) -> System:
    return make_system(SEED_003, regions=[
        {"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16"},
        {"name": "us-west-2", "role": "standby", "vpc_cidr": "10.1.0.0/16", **region}])


def test_one_default_environment_rule() -> None:
    system = make_system(SEED_003, environments=["production", "staging"])
    # The plan and the CDK app used to pick "staging" here while the kustomize base picked "production".
    assert default_environment(system) == "production"
    assert plan_default(system) == "production"
    assert base_target(system)[1] == "production"
    assert build_plan(system).environment == "production"
    assert default_environment(make_system(SEED_003, environments=["dev", "staging"])) == "staging"


def test_plan_uses_the_az_table() -> None:
    system = make_system(SEED_003, regions=[{"name": "ap-northeast-1", "role": "primary",
                                             "vpc_cidr": "10.0.0.0/16"}])
    azs = sorted({row.az for row in build_plan(system).subnets})
    assert azs == ["ap-northeast-1a", "ap-northeast-1c"]  # ap-northeast-1 has no "b" zone for new accounts


def test_bucket_names_are_checked_once_for_every_consumer() -> None:
    # The old CDK check allowed 64 characters (it counted 14 for the 3 dashes and the 12-digit account).
    bucket = "b" * (64 - len("fastapi-app-prod--123456789012-us-east-1"))
    system = make_system(SEED_003, resources={**SEED_003["resources"], bucket: {"kind": "bucket"}})
    with pytest.raises(DeployError, match="64 characters"):
        build_plan(system)
    with pytest.raises(DeployError, match="64 characters"):
        names.bucket_name(system, "prod", bucket, "us-east-1", "123456789012")
    fits = bucket[:-1]
    assert len(names.bucket_name(system, "prod", fits, "us-east-1", "123456789012")) == 63
    with pytest.raises(DeployError, match="lowercase"):
        names.check_bucket_name("Bad_Bucket", "")
    with pytest.raises(DeployError, match="reserves"):
        names.check_bucket_name("xn--bucket", "")


def test_standby_region_runs_at_the_standby_scale_in_manifests_and_plan() -> None:
    system = _standby()
    hpa = {o["metadata"]["name"]: o["spec"] for o in build_manifests(system, "us-west-2", "prod")
           if o["kind"] == "HorizontalPodAutoscaler"}
    assert (hpa["api"]["minReplicas"], hpa["api"]["maxReplicas"]) == (1, 10)
    plan = build_plan(system)
    api = {s.region: (s.replicas_min, s.replicas_max) for s in plan.capacity.services}
    assert api == {"us-east-1": (2, 10), "us-west-2": (1, 10)}
    nodes = {p.region: (p.nodes_min, p.nodes_desired, p.baseline_nodes) for p in plan.capacity.pools}
    # The standby's node group starts at 1; the plan still prices the 2 nodes its pods and add-ons need.
    assert nodes == {"us-east-1": (1, 2, 2), "us-west-2": (1, 1, 2)}
    big = make_system(SEED_003, regions=_standby().model_dump()["regions"],
                      cluster={"node_pools": [{"name": "general", "instance_types": ["t3.medium"], "min": 4,
                                               "max": 8, "desired": 6}]})
    compute = {ln.region: ln.item for ln in build_plan(big).cost.lines if ln.item.startswith("Nodes general")}
    assert compute == {"us-east-1": "Nodes general: 6 x t3.medium (on-demand)",
                       "us-west-2": "Nodes general: 2 x t3.medium (on-demand)"}


def test_dr_modes() -> None:
    assert replicas(_standby(dr="pilot-light"), "us-west-2", "prod", "api") == (1, 1)
    assert replicas(_standby(dr="active"), "us-west-2", "prod", "api") == (2, 10)
    assert replicas(_standby(), "us-west-2", "staging", "api") == (1, 5)
    with pytest.raises(ValueError, match="primary region cannot be dr"):
        make_system(SEED_003, regions=[{"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16",
                                        "dr": "warm-standby"}])


def test_cost_counts_bucket_replicas_where_cdk_creates_them() -> None:
    # A versioned bucket without replicate_to goes to the DR region: the first other region (no standby).
    system = make_system(SEED_003, regions=[
        {"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16", "traffic_share": 0.4},
        {"name": "eu-west-1", "role": "secondary", "vpc_cidr": "10.1.0.0/16", "traffic_share": 0.35},
        {"name": "ap-southeast-1", "role": "secondary", "vpc_cidr": "10.2.0.0/16", "traffic_share": 0.25}],
        resources={**SEED_003["resources"], "audit": {"kind": "bucket", "versioned": True, "storage_gb": 200}})
    assert resolve(system).buckets == {"audit": ["us-east-1", "eu-west-1"]}
    lines = [(ln.region, ln.item) for ln in build_plan(system).cost.lines if ln.item.startswith("S3 audit")]
    assert lines == [("us-east-1", "S3 audit: 200 GB"), ("eu-west-1", "S3 audit (replica): 200 GB")]


def test_deploy_imports_only_the_spec() -> None:
    code = ("import sys, stackwright.deploy\n"
            "bad = [m for m in sys.modules if m.startswith(('stackwright.render', 'stackwright.plan', "
            "'stackwright.local', 'aws_cdk'))]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
