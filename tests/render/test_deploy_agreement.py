"""Render, CDK and plan agree because they read one deployment model: proven on synthesized templates.

For every system under ``systems/`` and for a fixture with a private network, a standby region and a
region whose AZ letters skip ``b`` (ap-northeast-1), the CDK app is synthesized once and

* every ``AWS::EC2::Subnet`` (AZ, type, CidrBlock) equals :func:`stackwright.deploy.network.layout` and the
  subnet table of ``stackwright plan``;
* every AWS name the Kubernetes manifests and CI use (IAM roles, secrets, queues, buckets, topics, the
  ALB log bucket, origin hosts, SSM parameters) exists in the templates of the region it is used from. A
  name missing from the templates fails the test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.optional import require_extra

require_extra("aws")  # before the imports below, which need aws-cdk-lib
from stackwright.deploy import default_environment, resolve  # noqa: E402
from stackwright.deploy import names as naming  # noqa: E402
from stackwright.plan import build_plan  # noqa: E402
from stackwright.render.ci import render_ci  # noqa: E402
from stackwright.render.k8s import build_manifests  # noqa: E402
from stackwright.spec import System, load_system  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = sorted(p.parent.name for p in (ROOT / "systems").glob("*/system.yaml"))
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: Private network, a standby region in ap-northeast-1 (AZ letters a, c, d), a /20 VPC, a versioned bucket.
STANDBY_SPEC = """\
name: relay
environments: [production, staging]
regions:
  - {name: us-east-2, role: primary, vpc_cidr: 10.40.0.0/16}
  - {name: ap-northeast-1, role: standby, vpc_cidr: 10.41.0.0/20}
network: {azs: 2, layout: private, nat: single, vpc_endpoints: false}
cluster:
  node_pools:
    - {name: general, instance_types: [m6i.large], min: 2, max: 6, desired: 3}
edge: {domain: relay.example.com}
resources:
  jobs: {kind: queue, max_receive_count: 3}
  store: {kind: bucket, storage_gb: 50}
  cache: {kind: redis, node_type: cache.t4g.small}
services:
  api:
    replicas: {min: 3, max: 12}
    routes: [{path: /api}]
    uses: [jobs, store, cache]
  worker:
    kind: worker
    uses: [jobs, store]
slo: {peak_rps: 100}
"""


@pytest.fixture(scope="module", params=[*SYSTEMS, "standby-fixture"])
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """(system, environment, templates by stack name, region by stack name), synthesized once per system."""
    from stackwright.render.aws import build_app

    if request.param == "standby-fixture":
        folder = tmp_path_factory.mktemp("relay")
        (folder / "system.yaml").write_text(STANDBY_SPEC)
        system = load_system(folder / "system.yaml")
    else:
        system = load_system(request.param, root=ROOT)
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stacks = build_app(system, outdir=str(outdir))
    app.synth()
    return {"system": system, "env": default_environment(system),
            "templates": {s.stack_name: json.loads((outdir / s.template_file).read_text()) for s in stacks.all()},
            "regions": {s.stack_name: s.region for s in stacks.all()}}


def _of(templates: dict[str, Any], kind: str, stacks: list[str] | None = None) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for name, t in templates.items() if stacks is None or name in stacks
            for r in t["Resources"].values() if r["Type"] == kind]


def _text(value: Any, region: str) -> str | None:
    """A template string, with ``Fn::Join`` of account/region/partition refs resolved the way the manifests
    spell them (account as ``${AWS_ACCOUNT_ID}``); None for anything only known at deploy time."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        refs = {"AWS::AccountId": naming.ACCOUNT, "AWS::Region": region, "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com"}
        out = []
        for p in parts:
            text = refs.get(p.get("Ref", "")) if isinstance(p, dict) else p
            if text is None:
                return None
            out.append(text)
        return sep.join(out)
    return None


def _stacks_in(deployed: dict[str, Any], region: str) -> list[str]:
    return [s for s, r in deployed["regions"].items() if r == region]


def test_plan_subnets_are_the_synthesized_subnets(deployed: dict[str, Any]) -> None:
    system: System = deployed["system"]
    synthesized = set()
    for stack, template in deployed["templates"].items():
        for res in template["Resources"].values():
            if res["Type"] != "AWS::EC2::Subnet":
                continue
            props = res["Properties"]
            tags = {t["Key"]: t["Value"] for t in props["Tags"]}
            synthesized.add((deployed["regions"][stack], props["AvailabilityZone"],
                             tags["aws-cdk:subnet-type"].lower(), props["CidrBlock"]))
    model = resolve(system, deployed["env"])
    from_deploy = {(r, s.az, s.tier, s.cidr) for r, rd in model.regions.items() for s in rd.network.subnets}
    plan = build_plan(system, deployed["env"])
    from_plan = {(row.region, row.az, row.tier, row.cidr) for row in plan.subnets}
    assert len(synthesized) == len(system.regions) * system.network.azs * (
        1 if system.network.layout == "public-only" else 3)
    assert from_deploy == synthesized
    assert from_plan == synthesized


def _names_used(system: System, env: str, region: str) -> dict[str, set[tuple[str, str]]]:
    """AWS names the manifests of one region use: kind -> {(name, region it must exist in)}."""
    out: dict[str, set[tuple[str, str]]] = {k: set() for k in ("role", "secret", "queue", "bucket", "topic", "host")}
    objs = build_manifests(system, region, env)
    blob = json.dumps(objs)
    for role in re.findall(r"arn:aws:iam::\$\{AWS_ACCOUNT_ID\}:role/([\w+=,.@-]+)", blob):
        out["role"].add((role, region))
    for region_, topic in re.findall(r"arn:aws:sns:([a-z0-9-]+):\$\{AWS_ACCOUNT_ID\}:([\w-]+)", blob):
        out["topic"].add((topic, region_))
    for bucket in re.findall(r"access_logs\.s3\.bucket=([a-z0-9.-]+)", blob):
        out["bucket"].add((bucket, region))
    for o in objs:
        if o["kind"] == "ExternalSecret":
            for item in o["spec"].get("data", []):
                out["secret"].add((item["remoteRef"]["key"], region))
        if o["kind"] == "ConfigMap":
            data = o.get("data", {})
            for key, value in data.items():
                if key.endswith("_QUEUE"):
                    url = data[key.removesuffix("_QUEUE") + "_URL"]
                    out["queue"].add((value, url.split("region=", 1)[1]))
                if value.startswith("s3://"):
                    name = value.removeprefix("s3://").split("?", 1)[0]  # the query: the store's options (Object Lock)
                    out["bucket"].add((name, name.rsplit(f"{naming.ACCOUNT}-", 1)[1]))
        if o["kind"] == "Ingress":
            out["host"].add((o["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"], region))
    return out


def test_every_name_the_manifests_use_exists_in_the_cdk_app(deployed: dict[str, Any]) -> None:
    system: System = deployed["system"]
    env: str = deployed["env"]
    templates = deployed["templates"]
    missing: list[str] = []
    checked = 0
    for region in [r.name for r in system.regions]:
        for kind, used in _names_used(system, env, region).items():
            for name, where in sorted(used):
                stacks = _stacks_in(deployed, where)
                if kind == "role":
                    found = {_text(p.get("RoleName"), where) for p in _of(templates, "AWS::IAM::Role", stacks)}
                elif kind == "secret":
                    found = {_text(p.get("Name"), where) for p in _of(templates, "AWS::SecretsManager::Secret", stacks)}
                    # A secret replicated from the primary exists in every replica region too.
                    found |= {_text(p.get("Name"), where) for p in _of(templates, "AWS::SecretsManager::Secret")
                              if any(r.get("Region") == where for r in p.get("ReplicaRegions", []))}
                elif kind == "queue":
                    found = {_text(p.get("QueueName"), where) for p in _of(templates, "AWS::SQS::Queue", stacks)}
                elif kind == "bucket":
                    found = {_text(p.get("BucketName"), where) for p in _of(templates, "AWS::S3::Bucket", stacks)}
                elif kind == "topic":
                    found = {_text(p.get("TopicName"), where) for p in _of(templates, "AWS::SNS::Topic", stacks)}
                else:  # origin hosts: Route 53 health-checks them and the regional certificate covers them
                    found = {p["HealthCheckConfig"].get("FullyQualifiedDomainName")
                             for p in _of(templates, "AWS::Route53::HealthCheck")}
                checked += 1
                if name not in found:
                    missing.append(f"{kind} {name} (used in {region}, expected in {where})")
    ci = "\n".join(render_ci(system).values())
    ssm = {_text(p.get("Name"), "") for p in _of(templates, "AWS::SSM::Parameter")}
    for name in set(re.findall(rf"get-parameter --name ({re.escape(naming.ssm_prefix(system, env))}/\S+)", ci)):
        checked += 1
        if name not in ssm:
            missing.append(f"SSM parameter {name} (read by CI)")
    clusters = {_text(p.get("Name"), "") for p in _of(templates, "AWS::EKS::Cluster")}
    for region, rd in resolve(system, env).regions.items():
        checked += 1
        if rd.cluster not in clusters:
            missing.append(f"EKS cluster {rd.cluster} ({region})")
    assert checked > 3 * len(system.regions)
    assert not missing, "\n".join(missing)


def test_standby_region_is_created_at_the_standby_scale(deployed: dict[str, Any]) -> None:
    system: System = deployed["system"]
    standby = [r.name for r in system.regions if r.role == "standby"]
    if not standby:
        pytest.skip("no standby region in this system")
    (region,) = standby
    # Every node group waits at one node and may grow to its pool's max when traffic fails over.
    groups = _of(deployed["templates"], "AWS::EKS::Nodegroup", _stacks_in(deployed, region))
    assert sorted(g["ScalingConfig"]["MaxSize"] for g in groups) == sorted(p.max for p in system.cluster.node_pools)
    assert all((g["ScalingConfig"]["MinSize"], g["ScalingConfig"]["DesiredSize"]) == (1, 1) for g in groups)
    overlay = {o["metadata"]["name"]: o for o in build_manifests(system, region, deployed["env"])
               if o["kind"] == "HorizontalPodAutoscaler"}
    assert overlay
    for name, hpa in overlay.items():
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, system.services[name].replicas.max)
    plan = build_plan(system, deployed["env"])
    for svc in (s for s in plan.capacity.services if s.region == region and s.service in overlay):
        assert (svc.replicas_min, svc.replicas_max) == (1, system.services[svc.service].replicas.max)
    pools = {p.pool: p for p in plan.capacity.pools if p.region == region}
    assert {name: (p.nodes_min, p.nodes_desired, p.nodes_max) for name, p in pools.items()} == {
        p.name: (1, 1, p.max) for p in system.cluster.node_pools}
    assert yaml.safe_load(STANDBY_SPEC)["regions"][1]["role"] == "standby"
