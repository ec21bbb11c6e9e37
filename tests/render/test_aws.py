"""The AWS CDK app rendered for the voting system (3 regions), synthesized once for the whole module.

Checkers (cfn-lint, checkov) cover what they can; ``aws_cdk.assertions`` covers what they cannot
see: NAT per AZ, DLQ redrive, Route 53 failover and health checks, the WAF rate limit, ECR
lifecycle and immutability, Aurora backups and deletion protection, cross-region replicas, and
the S3 lifecycle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.optional import require_extra

require_extra("aws")  # before the imports below, which need aws-cdk-lib
from stackwright.deploy import names as naming  # noqa: E402
from stackwright.render.aws import render_aws  # noqa: E402
from stackwright.render.aws.skips import load_skips  # noqa: E402
from stackwright.spec import System, load_system  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def system() -> System:
    return load_system("voting", root=ROOT)


@pytest.fixture(scope="module")
def synthesized(system: System, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Synthesize once: stack objects, template paths and parsed templates by stack name."""
    from stackwright.render.aws import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stacks = build_app(system, outdir=str(outdir))
    app.synth()
    paths = {s.stack_name: outdir / s.template_file for s in stacks.all()}
    return {"stacks": stacks, "paths": paths,
            "templates": {name: json.loads(p.read_text()) for name, p in paths.items()}}


def _template(synthesized: dict[str, Any], name: str) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(synthesized["templates"][name])


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _regional(system: System) -> list[str]:
    return [naming.regional_stack_name(system, "prod", r.name) for r in system.regions]


# ------------------------------------------------------------------ rendered files


def test_render_files_are_complete_and_deterministic(system: System) -> None:
    files = render_aws(system)
    assert set(files) == {"aws/app.py", "aws/system.yaml", "aws/cdk.json", "aws/cdk.context.json",
                          "aws/requirements.txt", "aws/README.md"}
    assert render_aws(load_system("voting", root=ROOT)) == files
    cdk = json.loads(files["aws/cdk.json"])
    assert cdk["app"] == "python3 app.py"
    assert cdk["context"]["@aws-cdk/aws-eks:defaultToAL2023"] is True
    context = json.loads(files["aws/cdk.context.json"])
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        key = f"availability-zones:account={naming.PLACEHOLDER_ACCOUNT}:region={region}"
        assert context[key] == [f"{region}a", f"{region}b", f"{region}c"]
    assert files["aws/system.yaml"] == (ROOT / "systems/voting/system.yaml").read_text()
    compile(files["aws/app.py"], "app.py", "exec")
    assert "stackwright.render.aws.stacks import build_app" in files["aws/app.py"]
    assert "aws-cdk-lib==" in files["aws/requirements.txt"]
    assert "writer.vote.example.com" in files["aws/README.md"]


def test_skips_file_gives_a_reason_for_every_skip() -> None:
    skips = load_skips()
    assert skips, "checkov_skips.yaml is empty"
    for skip in skips:
        assert skip.check.startswith("CKV"), skip
        assert len(skip.reason) > 40, f"{skip.check}: reason too short"
        assert skip.type.startswith("AWS::"), skip


# ------------------------------------------------------------------ checkers


@pytest.mark.checkers
def test_cfn_lint_has_no_errors(synthesized: dict[str, Any]) -> None:
    from stackwright.render.aws.checks import cfn_lint

    result = cfn_lint(list(synthesized["paths"].values()))
    print(result.summary())
    for warning in result.warnings:
        print("  ", warning)
    assert result.ok, "\n".join(map(str, result.errors))


def test_checkov_has_no_failures(synthesized: dict[str, Any], checkov_exe: Path) -> None:
    from stackwright.render.aws.checks import checkov

    result = checkov(list(synthesized["paths"].values()))
    print(result.summary())
    assert result.ok, "\n".join(map(str, result.errors))
    assert result.passed > 500
    # Every skip came from checkov_skips.yaml (the only place skips are written).
    known = {s.check for s in load_skips()}
    assert {check for check, _ in result.skipped_checks} <= known


# ------------------------------------------------------------------ stacks


def test_stacks_and_deploy_order(system: System, synthesized: dict[str, Any]) -> None:
    stacks = synthesized["stacks"]
    names = [s.stack_name for s in stacks.all()]
    assert names == [
        "voting-prod-global", "voting-prod-us-east-1-foundation", "voting-prod-eu-west-1-foundation",
        "voting-prod-ap-southeast-1-foundation", "voting-prod-us-east-1", "voting-prod-eu-west-1",
        "voting-prod-ap-southeast-1",
    ]
    primary = stacks.regional["us-east-1"]
    assert {d.stack_name for d in primary.dependencies} >= {"voting-prod-global", "voting-prod-us-east-1-foundation"}
    for region in ("eu-west-1", "ap-southeast-1"):
        deps = {d.stack_name for d in stacks.regional[region].dependencies}
        assert {primary.stack_name, f"voting-prod-{region}-foundation", "voting-prod-global"} <= deps
    assert stacks.global_.region == "us-east-1" and not stacks.global_.dependencies


def test_nat_gateway_per_az(system: System, synthesized: dict[str, Any]) -> None:
    for name in _regional(system):
        t = synthesized["templates"][name]
        nats = _resources(t, "AWS::EC2::NatGateway")
        assert len(nats) == system.network.azs == 3
        subnets = {json.dumps(n["Properties"]["SubnetId"]) for n in nats.values()}
        assert len(subnets) == 3, "each NAT gateway sits in its own AZ's public subnet"
        template = _template(synthesized, name)
        template.resource_count_is("AWS::EC2::Subnet", 9)
        template.resource_count_is("AWS::EC2::FlowLog", 1)
        endpoints = _resources(t, "AWS::EC2::VPCEndpoint")
        services = json.dumps([e["Properties"]["ServiceName"] for e in endpoints.values()])
        for service in ("ecr.api", "ecr.dkr", "sts", "logs", "secretsmanager", "sqs", ".s3", ".ssm\"",
                        ".ssmmessages", ".ec2messages"):
            assert service in services


def test_eks_cluster_and_node_groups(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    template = _template(synthesized, "voting-prod-us-east-1")
    template.has_resource_properties("AWS::EKS::Cluster", {
        "Name": "voting-prod-us-east-1",
        "Version": "1.33",
        "EncryptionConfig": [Match.object_like({"Resources": ["secrets"]})],
        "Logging": {"ClusterLogging": {"EnabledTypes": [{"Type": t} for t in
                                                         ("api", "audit", "authenticator", "controllerManager",
                                                          "scheduler")]}},
        "ResourcesVpcConfig": Match.object_like({"EndpointPrivateAccess": True, "EndpointPublicAccess": False}),
        "AccessConfig": {"AuthenticationMode": "API", "BootstrapClusterCreatorAdminPermissions": False},
    })
    template.has_resource_properties("AWS::EKS::Nodegroup", {
        "NodegroupName": "general", "AmiType": "AL2023_x86_64_STANDARD", "InstanceTypes": ["m6i.2xlarge"],
        "ScalingConfig": {"MinSize": 3, "MaxSize": 10, "DesiredSize": 3}, "NodeRepairConfig": {"Enabled": True},
    })
    template.has_resource_properties("AWS::EC2::LaunchTemplate", {"LaunchTemplateData": Match.object_like({
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}})})
    addons = {a["Properties"]["AddonName"] for a in
              _resources(synthesized["templates"]["voting-prod-us-east-1"], "AWS::EKS::Addon").values()}
    assert addons == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    for service in system.services:
        template.has_resource_properties("AWS::EKS::PodIdentityAssociation", {
            "Namespace": "voting", "ServiceAccount": service})


def test_service_roles_trust_pod_identity_and_irsa(system: System, synthesized: dict[str, Any]) -> None:
    for region in ("us-east-1", "eu-west-1"):
        t = synthesized["templates"][f"voting-prod-{region}"]
        roles = {r["Properties"].get("RoleName"): r["Properties"] for r in _resources(t, "AWS::IAM::Role").values()}
        for service in system.services:
            role = roles[naming.service_role_name(system, "prod", region, service)]
            trust = role["AssumeRolePolicyDocument"]["Statement"]
            assert {"Service": "pods.eks.amazonaws.com"} in [s["Principal"] for s in trust]
            assert ["sts:AssumeRole", "sts:TagSession"] in [s["Action"] for s in trust]
            assert "sts:AssumeRoleWithWebIdentity" in [s["Action"] for s in trust]
        conditions = [c["Properties"]["Value"] for c in _resources(t, "Custom::AWSCDKCfnJson").values()]
        assert any("system:serviceaccount:voting:vote" in json.dumps(c) for c in conditions)


def test_secrets_carry_ready_urls(system: System, synthesized: dict[str, Any]) -> None:
    for region in ("us-east-1", "eu-west-1"):
        t = synthesized["templates"][f"voting-prod-{region}"]
        secrets = {s["Properties"]["Name"]: s["Properties"]
                   for s in _resources(t, "AWS::SecretsManager::Secret").values()}
        login = json.dumps(secrets["voting/prod/db/users/vote"]["SecretString"])
        password = "{{resolve:secretsmanager:voting/prod/db/users/vote/password:SecretString:password}}"
        assert f"postgresql://vote:{password}@" in login
        assert "read_url" in login and "ReadEndpoint.Address" in login
        cache = json.dumps(secrets["voting/prod/cache/auth-token"]["SecretString"])
        assert "rediss://:{{resolve:secretsmanager:voting/prod/cache/token:SecretString:token}}@" in cache
        params = {p["Properties"]["Name"] for p in _resources(t, "AWS::SSM::Parameter").values()
                  if "Name" in p["Properties"]}
        assert params == {"/voting/prod/certificate-arn", "/voting/prod/waf-acl-arn"}
        cert = next(iter(_resources(t, "AWS::CertificateManager::Certificate").values()))["Properties"]
        assert cert["DomainName"] == "vote.example.com"
        assert set(cert["SubjectAlternativeNames"]) == {"api.vote.example.com", "writer.vote.example.com",
                                                        f"{region}.vote.example.com"}
        buckets = [json.dumps(b["Properties"].get("BucketName")) for b in _resources(t, "AWS::S3::Bucket").values()]
        assert json.dumps(f"voting-prod-{region}-alb-logs") in buckets
    primary = synthesized["templates"]["voting-prod-us-east-1"]
    password = next(s["Properties"] for s in _resources(primary, "AWS::SecretsManager::Secret").values()
                    if s["Properties"]["Name"] == "voting/prod/db/users/vote/password")
    assert {r["Region"] for r in password["ReplicaRegions"]} == {"eu-west-1", "ap-southeast-1"}
    # Each replica is encrypted with its own region's data key.
    assert all(r["KmsKeyId"] == f"arn:aws:kms:{r['Region']}:123456789012:alias/voting-prod/data"
               for r in password["ReplicaRegions"])


def test_service_roles_are_scoped_to_what_they_use(synthesized: dict[str, Any]) -> None:
    t = synthesized["templates"]["voting-prod-us-east-1"]
    policies = {k: json.dumps(v["Properties"]["PolicyDocument"]) for k, v in
                _resources(t, "AWS::IAM::Policy").items() if k.startswith("ServiceRoles")}
    by_service = {s: next(p for k, p in policies.items() if k.startswith(f"ServiceRoles{s}")) for s in
                  ("auth", "vote", "worker")}
    assert "sqs:" not in by_service["auth"] and "rds-db:connect" not in by_service["auth"]
    assert "voting/prod/cache/auth-token" in by_service["auth"]
    assert "sqs:SendMessage" in by_service["vote"] and "rds-db:connect" in by_service["vote"]
    assert "s3:PutObject" not in by_service["vote"]
    assert "s3:PutObject" in by_service["worker"] and "sqs:ReceiveMessage" in by_service["worker"]
    assert not any(k.startswith("ServiceRolesweb") for k in policies) or "sqs:" not in next(
        p for k, p in policies.items() if k.startswith("ServiceRolesweb"))


def test_queue_has_dlq_with_spec_redrive(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Capture, Match

    spec = system.resources["votes"]
    for name in _regional(system):
        template = _template(synthesized, name)
        dlq = Capture()
        template.has_resource_properties("AWS::SQS::Queue", {
            "QueueName": "voting-prod-votes",
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                              "maxReceiveCount": spec.max_receive_count},
            "VisibilityTimeout": 30,
            "MessageRetentionPeriod": 4 * 86400,
            "KmsMasterKeyId": Match.any_value(),
        })
        dlq_props = synthesized["templates"][name]["Resources"][dlq.as_string()]["Properties"]
        assert dlq_props["QueueName"] == "voting-prod-votes-dlq"
        assert dlq_props["MessageRetentionPeriod"] == 14 * 86400
        template.has_resource_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


def test_route53_failover_latency_and_health_checks(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    template = _template(synthesized, "voting-prod-global")
    edge = system.edge
    template.resource_count_is("AWS::Route53::HealthCheck", 3)
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        template.has_resource_properties("AWS::Route53::HealthCheck", {"HealthCheckConfig": Match.object_like({
            "Type": "HTTPS", "FullyQualifiedDomainName": f"{region}.vote.example.com", "Port": 443,
            "ResourcePath": naming.HEALTH_CHECK_PATH, "RequestInterval": edge.health_check_interval_s,
            "FailureThreshold": edge.health_check_failure_threshold})})
        template.has_resource_properties("AWS::Route53::RecordSet", {
            "Name": "api.vote.example.com.", "Type": "CNAME", "Region": region,
            "ResourceRecords": [f"{region}.vote.example.com"], "TTL": str(edge.dns_ttl_s),
            "HealthCheckId": Match.any_value()})
    records = _resources(synthesized["templates"]["voting-prod-global"], "AWS::Route53::RecordSet")
    writer = {r["Properties"]["Failover"]: r["Properties"] for r in records.values()
              if r["Properties"].get("Failover")}
    assert set(writer) == {"PRIMARY", "SECONDARY"}
    assert writer["PRIMARY"]["ResourceRecords"] == ["us-east-1.vote.example.com"]
    assert writer["SECONDARY"]["ResourceRecords"] == ["eu-west-1.vote.example.com"]
    assert all(w["Name"] == "writer.vote.example.com." and "HealthCheckId" in w for w in writer.values())
    template.has_resource_properties("AWS::Route53::HostedZone", {
        "Name": "vote.example.com.", "QueryLoggingConfig": Match.any_value()})
    template.resource_count_is("AWS::Route53::DNSSEC", 1)


def test_waf_rate_rule_uses_spec_limit(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    assert system.edge.waf is not None
    for name in _regional(system):
        template = _template(synthesized, name)
        template.has_resource_properties("AWS::WAFv2::WebACL", {
            "Scope": "REGIONAL",
            "Rules": Match.array_with([
                Match.object_like({"Action": {"Block": {}}, "Statement": {"RateBasedStatement": {
                    "Limit": system.edge.waf.rate_limit_per_5min, "AggregateKeyType": "IP",
                    "EvaluationWindowSec": 300}}}),
                Match.object_like({"Statement": {"ManagedRuleGroupStatement": {
                    "VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}}}),
                Match.object_like({"Statement": {"ManagedRuleGroupStatement": {
                    "VendorName": "AWS", "Name": "AWSManagedRulesKnownBadInputsRuleSet"}}}),
            ]),
        })
        template.resource_count_is("AWS::WAFv2::LoggingConfiguration", 1)


def test_ecr_repositories_are_immutable_with_lifecycle(system: System, synthesized: dict[str, Any]) -> None:
    for name in _regional(system):
        repos = _resources(synthesized["templates"][name], "AWS::ECR::Repository")
        assert {r["Properties"]["RepositoryName"] for r in repos.values()} == {f"voting/{s}" for s in system.services}
        for repo in repos.values():
            props = repo["Properties"]
            assert props["ImageTagMutability"] == "IMMUTABLE"
            assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
            assert props["EncryptionConfiguration"]["EncryptionType"] == "KMS"
            rules = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
            assert {r["selection"]["tagStatus"] for r in rules} == {"untagged", "any"}
            assert any(r["selection"]["countType"] == "imageCountMoreThan" for r in rules)
    _template(synthesized, "voting-prod-us-east-1").resource_count_is("AWS::ECR::ReplicationConfiguration", 1)


def test_aurora_primary_backups_and_deletion_protection(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    db = system.resources["db"]
    template = _template(synthesized, "voting-prod-us-east-1")
    template.has_resource("AWS::RDS::DBCluster", {
        "DeletionPolicy": "Snapshot", "UpdateReplacePolicy": "Snapshot",
        "Properties": Match.object_like({
            "Engine": "aurora-postgresql", "DBClusterIdentifier": "voting-prod-db", "DatabaseName": "voting",
            "BackupRetentionPeriod": db.backup_retention_days, "PreferredBackupWindow": Match.any_value(),
            "DeletionProtection": True, "StorageEncrypted": True, "KmsKeyId": Match.any_value(),
            "EnableIAMDatabaseAuthentication": True, "EnableCloudwatchLogsExports": ["postgresql"],
        }),
    })
    template.resource_count_is("AWS::RDS::DBInstance", db.instances)
    template.has_resource_properties("AWS::RDS::GlobalCluster", {
        "GlobalClusterIdentifier": "voting-prod-db-global", "DeletionProtection": True,
        "SourceDBClusterIdentifier": Match.any_value()})
    template.has_resource_properties("AWS::Backup::BackupPlan", {"BackupPlan": {"BackupPlanRule": Match.array_with([
        Match.object_like({"EnableContinuousBackup": True,
                           "Lifecycle": {"DeleteAfterDays": db.backup_retention_days}}),
        Match.object_like({"RuleName": "daily-snapshot", "CopyActions": [Match.object_like({
            "DestinationBackupVaultArn": "arn:aws:backup:eu-west-1:123456789012:backup-vault:voting-prod-vault"})]}),
    ])}})
    _template(synthesized, "voting-prod-us-east-1-foundation").has_resource_properties(
        "AWS::Backup::BackupVault", {"BackupVaultName": "voting-prod-vault", "EncryptionKeyArn": Match.any_value()})


def test_cross_region_replicas_in_secondary_regions(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    for region in ("eu-west-1", "ap-southeast-1"):
        t = synthesized["templates"][f"voting-prod-{region}"]
        (cluster,) = _resources(t, "AWS::RDS::DBCluster").values()
        props = cluster["Properties"]
        assert props["GlobalClusterIdentifier"] == "voting-prod-db-global"
        assert "MasterUsername" not in props and "MasterUserPassword" not in props
        assert props["StorageEncrypted"] is True and props["DeletionProtection"] is True
        assert props["EnableGlobalWriteForwarding"] is True
        assert len(_resources(t, "AWS::RDS::DBInstance")) == 2
        assert not _resources(t, "AWS::RDS::GlobalCluster")
        _template(synthesized, f"voting-prod-{region}").has_resource_properties(
            "AWS::ElastiCache::ReplicationGroup", Match.object_like({
                "MultiAZEnabled": True, "AutomaticFailoverEnabled": True, "AtRestEncryptionEnabled": True,
                "TransitEncryptionEnabled": True, "ReplicasPerNodeGroup": 2,
                "AuthToken": "{{resolve:secretsmanager:voting/prod/cache/token:SecretString:token}}"}))


def test_s3_lifecycle_to_glacier_after_90_days(system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    template = _template(synthesized, "voting-prod-us-east-1")
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketName": {"Fn::Join": ["", ["voting-prod-audit-", {"Ref": "AWS::AccountId"}, "-us-east-1"]]},
        "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({
            "Status": "Enabled", "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}]})])},
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({
            "ServerSideEncryptionByDefault": Match.object_like({"SSEAlgorithm": "aws:kms"})})]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "LoggingConfiguration": Match.object_like({"LogFilePrefix": "audit/"}),
        "ReplicationConfiguration": Match.object_like({"Rules": [Match.object_like({
            "Destination": Match.object_like({"EncryptionConfiguration": {
                "ReplicaKmsKeyID": "arn:aws:kms:eu-west-1:123456789012:alias/voting-prod/data"}})})]}),
    })
    # The DR copy lives in the DR region's foundation stack, with the same lifecycle.
    _template(synthesized, "voting-prod-eu-west-1-foundation").has_resource_properties("AWS::S3::Bucket", {
        "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({
            "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}]})])}})


def test_log_groups_have_spec_retention_and_kms(system: System, synthesized: dict[str, Any]) -> None:
    count = 0
    for template in synthesized["templates"].values():
        for group in _resources(template, "AWS::Logs::LogGroup").values():
            assert group["Properties"]["RetentionInDays"] == system.monitoring.log_retention_days
            assert "KmsKeyId" in group["Properties"]
            count += 1
    assert count >= 16


def test_copied_spec_round_trips(system: System) -> None:
    data = yaml.safe_load(render_aws(system)["aws/system.yaml"])
    assert System.model_validate(data).model_dump() == system.model_dump()


def test_keda_reads_queue_depth_through_a_scaler_role_trusted_by_its_operator(
        system: System, synthesized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    for region in ("us-east-1", "eu-west-1"):
        raw = synthesized["templates"][f"voting-prod-{region}"]
        template = _template(synthesized, f"voting-prod-{region}")
        template.has_resource_properties("AWS::IAM::Role", {
            "RoleName": f"voting-prod-{region}-worker-keda",
            "AssumeRolePolicyDocument": {"Statement": [Match.object_like({
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Principal": {"Federated": Match.any_value()}})]}})
        roles = {k: r for k, r in _resources(raw, "AWS::IAM::Role").items()
                 if r["Properties"].get("RoleName") in (f"voting-prod-{region}-worker-keda",
                                                        f"voting-prod-{region}-keda-operator")}
        assert len(roles) == 2
        for role in roles.values():
            (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            cfn_json = trust["Condition"]["StringEquals"]["Fn::GetAtt"][0]
            value = json.dumps(raw["Resources"][cfn_json]["Properties"]["Value"])
            assert "system:serviceaccount:keda:keda-operator" in value and "sts.amazonaws.com" in value
        scaler = next(k for k, r in roles.items() if r["Properties"]["RoleName"].endswith("-worker-keda"))
        policies = _resources(raw, "AWS::IAM::Policy").values()
        (statements,) = [p["Properties"]["PolicyDocument"]["Statement"] for p in policies
                         if {"Ref": scaler} in p["Properties"]["Roles"]]
        (statement,) = statements  # nothing but the queue depth
        assert statement["Action"] == "sqs:GetQueueAttributes" and statement["Effect"] == "Allow"
        assert statement["Resource"] == f"arn:aws:sqs:{region}:123456789012:voting-prod-votes"
        assert any(k.startswith("KedaOperatorRoleArn") for k in raw["Outputs"])
