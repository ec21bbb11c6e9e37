"""What the voting spec does not exercise, on a small two-region spec synthesized once for the module.

Public-only network (no NAT), ARM and GPU node pools, RDS PostgreSQL with a cross-region read
replica, per-tenant and external databases, cluster-mode Redis in the primary only, a FIFO queue,
SNS topics, OpenSearch, buckets with several lifecycle steps and an unversioned one, a WAF without
managed rules, a standby region. Also runs the generated ``app.py`` and checks it synthesizes the
same templates as :func:`stackwright.render.aws.synth`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.optional import require_extra

require_extra("aws")  # before the imports below, which need aws-cdk-lib

from stackwright.render.aws import render_aws  # noqa: E402
from stackwright.spec import System, load_system  # noqa: E402

SPEC = """\
name: sink
environments: [prod]
regions:
  - {name: eu-central-1, role: primary, vpc_cidr: 10.20.0.0/16}
  - {name: us-west-2, role: standby, vpc_cidr: 10.21.0.0/16}
network: {azs: 2, layout: public-only, nat: none}
cluster:
  node_pools:
    - {name: general, instance_types: [m7g.large], min: 2, max: 4}
    - {name: gpu, instance_types: [g5.xlarge], min: 0, max: 2, gpu: true, capacity: spot}
edge: {domain: sink.example.com, waf: {rate_limit_per_5min: 500, managed_rules: false}}
resources:
  tenants: {kind: postgres, engine: rds-postgresql, version: "16.9", instance_class: db.r6g.large,
            cross_region_replicas: true, per_tenant: true, backup_retention_days: 21}
  legacy: {kind: postgres, engine: external}
  cache: {kind: redis, node_type: cache.t4g.small, shards: 2, replicas_per_shard: 1, per_region: false}
  jobs: {kind: queue, fifo: true, max_receive_count: 3, visibility_timeout: 2m, retention: 7d}
  events: {kind: topic}
  files:
    kind: bucket
    lifecycle:
      - {after_days: 30, storage_class: STANDARD_IA}
      - {after_days: 180, storage_class: DEEP_ARCHIVE}
      - {after_days: 3650, storage_class: EXPIRE}
  scratch: {kind: bucket, versioned: false, lifecycle: [{after_days: 7, storage_class: EXPIRE}]}
  search: {kind: search, instance_type: t3.medium.search, instances: 2}
services:
  api:
    routes: [{path: /api}]
    uses: [tenants, legacy, cache, jobs, events, files, scratch, search]
  infer:
    kind: worker
    node_pool: gpu
    resources: {gpu: 1}
    uses: [jobs, files]
slo: {peak_rps: 100}
"""

PRIMARY, STANDBY = "sink-prod-eu-central-1", "sink-prod-us-west-2"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sink")
    (path / "system.yaml").write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def system(spec_dir: Path) -> System:
    return load_system(spec_dir / "system.yaml")


@pytest.fixture(scope="module")
def synthesized(system: System, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stackwright.render.aws import synth

    outdir = tmp_path_factory.mktemp("cdk.out")
    paths = synth(system, outdir)
    return {"paths": paths, "templates": {p.name.removesuffix(".template.json"): json.loads(p.read_text())
                                          for p in paths}}


def _resources(synthesized: dict[str, Any], stack: str, kind: str) -> list[dict[str, Any]]:
    return [v["Properties"] for v in synthesized["templates"][stack]["Resources"].values() if v["Type"] == kind]


def _one(synthesized: dict[str, Any], stack: str, kind: str) -> dict[str, Any]:
    (found,) = _resources(synthesized, stack, kind)
    return found


def test_checkers_pass(synthesized: dict[str, Any], checkov_exe: Path) -> None:
    from stackwright.render.aws.checks import cfn_lint, checkov

    lint = cfn_lint(synthesized["paths"])
    print(lint.summary())
    assert lint.ok, "\n".join(map(str, lint.errors))
    scan = checkov(synthesized["paths"])
    print(scan.summary())
    assert scan.ok, "\n".join(map(str, scan.errors))


def test_public_only_network_has_no_nat(synthesized: dict[str, Any]) -> None:
    for stack in (PRIMARY, STANDBY):
        assert not _resources(synthesized, stack, "AWS::EC2::NatGateway")
        subnets = _resources(synthesized, stack, "AWS::EC2::Subnet")
        assert len(subnets) == 2 and all(s["MapPublicIpOnLaunch"] for s in subnets)
        config = _one(synthesized, stack, "AWS::EKS::Cluster")["ResourcesVpcConfig"]
        assert config["EndpointPublicAccess"] is True and config["EndpointPrivateAccess"] is True


def test_gpu_and_arm_node_pools(synthesized: dict[str, Any]) -> None:
    groups = {g["NodegroupName"]: g for g in _resources(synthesized, PRIMARY, "AWS::EKS::Nodegroup")}
    assert groups["general"]["AmiType"] == "AL2023_ARM_64_STANDARD"
    assert groups["gpu"]["AmiType"] == "AL2023_x86_64_NVIDIA"
    assert groups["gpu"]["CapacityType"] == "SPOT"
    assert groups["gpu"]["Taints"] == [{"Effect": "NO_SCHEDULE", "Key": "nvidia.com/gpu", "Value": "true"}]
    assert groups["gpu"]["ScalingConfig"] == {"MinSize": 0, "MaxSize": 2, "DesiredSize": 0}


def test_rds_primary_and_cross_region_read_replica(synthesized: dict[str, Any]) -> None:
    primary = _one(synthesized, PRIMARY, "AWS::RDS::DBInstance")
    assert primary["DBInstanceIdentifier"] == "sink-prod-tenants"
    assert primary["MultiAZ"] is True and primary["StorageEncrypted"] is True
    assert primary["DeletionProtection"] is True and primary["BackupRetentionPeriod"] == 21
    assert primary["EnableIAMDatabaseAuthentication"] is True
    replica = _one(synthesized, STANDBY, "AWS::RDS::DBInstance")
    assert replica["SourceDBInstanceIdentifier"] == "arn:aws:rds:eu-central-1:123456789012:db:sink-prod-tenants"
    assert replica["SourceRegion"] == "eu-central-1" and "KmsKeyId" in replica
    names = [s.get("Name") for s in _resources(synthesized, PRIMARY, "AWS::SecretsManager::Secret")]
    assert "sink/prod/legacy/url" in names and "sink/prod/tenants/users/api" in names


def test_per_tenant_database_lets_services_create_tenant_secrets(synthesized: dict[str, Any]) -> None:
    policies = json.dumps(_resources(synthesized, PRIMARY, "AWS::IAM::Policy"))
    assert "secretsmanager:CreateSecret" in policies
    assert "secret:sink/prod/tenants/tenants/*" in policies


def test_cluster_mode_redis_only_in_primary(synthesized: dict[str, Any]) -> None:
    group = _one(synthesized, PRIMARY, "AWS::ElastiCache::ReplicationGroup")
    assert group["ClusterMode"] == "enabled" and group["NumNodeGroups"] == 2
    assert group["AutomaticFailoverEnabled"] is True and group["TransitEncryptionEnabled"] is True
    assert not _resources(synthesized, STANDBY, "AWS::ElastiCache::ReplicationGroup")
    # The standby's services reach the primary's Redis: their url secret names its endpoint.
    url = next(s for s in _resources(synthesized, STANDBY, "AWS::SecretsManager::Secret")
               if s["Name"] == "sink/prod/cache/auth-token")
    assert '"StackName": "sink-prod-eu-central-1", "Region": "eu-central-1"' in json.dumps(url["SecretString"])


def test_fifo_queue_with_dlq(synthesized: dict[str, Any]) -> None:
    queues = {q["QueueName"]: q for q in _resources(synthesized, PRIMARY, "AWS::SQS::Queue")}
    assert set(queues) == {"sink-prod-jobs.fifo", "sink-prod-jobs-dlq.fifo"}
    main = queues["sink-prod-jobs.fifo"]
    assert main["FifoQueue"] is True and main["VisibilityTimeout"] == 120
    assert main["RedrivePolicy"]["maxReceiveCount"] == 3
    assert main["MessageRetentionPeriod"] == 7 * 86400


def test_topic_and_search(synthesized: dict[str, Any]) -> None:
    topic = _one(synthesized, PRIMARY, "AWS::SNS::Topic")
    assert topic["TopicName"] == "sink-prod-events" and "KmsMasterKeyId" in topic
    domain = _one(synthesized, PRIMARY, "AWS::OpenSearchService::Domain")
    assert domain["EncryptionAtRestOptions"]["Enabled"] is True
    assert domain["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert domain["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert domain["ClusterConfig"]["InstanceCount"] == 2
    assert len(domain["VPCOptions"]["SubnetIds"]) == 2
    assert set(domain["LogPublishingOptions"]) == {"SEARCH_SLOW_LOGS", "INDEX_SLOW_LOGS", "ES_APPLICATION_LOGS"}


def test_bucket_lifecycles_follow_the_spec(synthesized: dict[str, Any]) -> None:
    buckets = {json.dumps(b["BucketName"]): b for b in _resources(synthesized, PRIMARY, "AWS::S3::Bucket")}
    files = next(b for n, b in buckets.items() if "sink-prod-files-" in n)
    rule = next(r for r in files["LifecycleConfiguration"]["Rules"] if r["Id"] == "spec-lifecycle")
    assert rule["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
                                   {"StorageClass": "DEEP_ARCHIVE", "TransitionInDays": 180}]
    assert rule["ExpirationInDays"] == 3650
    assert "ReplicationConfiguration" in files
    scratch = next(b for n, b in buckets.items() if "sink-prod-scratch-" in n)
    assert "VersioningConfiguration" not in scratch and "ReplicationConfiguration" not in scratch
    rule = next(r for r in scratch["LifecycleConfiguration"]["Rules"] if r["Id"] == "spec-lifecycle")
    assert rule["ExpirationInDays"] == 7 and "NoncurrentVersionExpiration" not in rule
    # The DR copy of the versioned bucket lives in the standby region's foundation stack.
    replicas = [json.dumps(b["BucketName"]) for b in _resources(synthesized, f"{STANDBY}-foundation",
                                                                "AWS::S3::Bucket")]
    assert any("sink-prod-files-" in r for r in replicas)
    assert not any("sink-prod-scratch-" in r for r in replicas)


def test_waf_without_managed_rules(synthesized: dict[str, Any]) -> None:
    acl = _one(synthesized, PRIMARY, "AWS::WAFv2::WebACL")
    (rule,) = acl["Rules"]
    assert rule["Statement"]["RateBasedStatement"]["Limit"] == 500


def test_standby_region_is_the_failover_target_and_serves_no_traffic(synthesized: dict[str, Any]) -> None:
    records = _resources(synthesized, "sink-prod-global", "AWS::Route53::RecordSet")
    latency = [r for r in records if "Region" in r]
    assert [r["Region"] for r in latency] == ["eu-central-1"]
    failover = {r["Failover"]: r["ResourceRecords"] for r in records if "Failover" in r}
    assert failover == {"PRIMARY": ["eu-central-1.sink.example.com"], "SECONDARY": ["us-west-2.sink.example.com"]}
    checks = _resources(synthesized, "sink-prod-global", "AWS::Route53::HealthCheck")
    assert {c["HealthCheckConfig"]["RequestInterval"] for c in checks} == {30}


def test_generated_app_synthesizes_the_same_templates(system: System, synthesized: dict[str, Any],
                                                      tmp_path: Path) -> None:
    for rel, text in render_aws(system).items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    out = tmp_path / "cdk.out"
    env = {**os.environ, "CDK_OUTDIR": str(out)}
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    proc = subprocess.run([sys.executable, "app.py"], cwd=tmp_path / "aws", env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in synthesized["paths"]:
        assert (out / path.name).read_bytes() == path.read_bytes(), f"{path.name} differs"


def test_unknown_environment_is_refused(system: System) -> None:
    from stackwright.render.aws import build_app

    with pytest.raises(ValueError, match="environment 'staging' is not one of prod"):
        build_app(system, environment="staging")
