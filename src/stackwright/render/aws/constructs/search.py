"""Full-text search: an OpenSearch domain inside the VPC, encrypted, HTTPS-only, logging to CloudWatch."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from constructs import Construct

from stackwright.spec.model import SearchResource

from .keys import RegionalKeys
from .logs import log_group
from .network import Network

ENGINE = opensearch.EngineVersion.OPENSEARCH_2_19
VOLUME_GIB = 100


class SearchDomain(Construct):
    """OpenSearch with ``instances`` data nodes spread over AZs, KMS at rest, node-to-node TLS,
    TLS 1.2 enforced, slow/application/audit logs to KMS-encrypted log groups, and access through
    IAM identity policies of the services that use it (signed requests only)."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: SearchResource, name: str, network: Network,
                 keys: RegionalKeys, clients: ec2.ISecurityGroup, log_retention_days: int, azs: int) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            description=f"OpenSearch {name}: reachable from the EKS cluster only")
        self.security_group.add_ingress_rule(clients, ec2.Port.tcp(443), "HTTPS from EKS nodes and pods")
        zones = max(1, min(spec.instances, azs, 3))
        subnets = network.vpc.select_subnets(subnet_group_name=network.data_subnets.subnet_group_name).subnets
        groups = {
            kind: log_group(self, f"{kind}Logs", name=f"/aws/opensearch/{name}/{kind}", days=log_retention_days,
                            key=keys.logs)
            for kind in ("slow-search", "slow-index", "application")
        }
        self.domain = opensearch.Domain(
            self,
            "Domain",
            domain_name=name,
            version=ENGINE,
            vpc=network.vpc,
            vpc_subnets=[ec2.SubnetSelection(subnets=subnets[:zones])],
            security_groups=[self.security_group],
            capacity=opensearch.CapacityConfig(data_nodes=spec.instances, data_node_instance_type=spec.instance_type,
                                               multi_az_with_standby_enabled=False),
            zone_awareness=opensearch.ZoneAwarenessConfig(enabled=zones > 1, availability_zone_count=zones)
            if zones > 1 else opensearch.ZoneAwarenessConfig(enabled=False),
            ebs=opensearch.EbsOptions(volume_size=VOLUME_GIB, volume_type=ec2.EbsDeviceVolumeType.GP3),
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True, kms_key=keys.data),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2,
            logging=opensearch.LoggingOptions(
                slow_search_log_enabled=True, slow_search_log_group=groups["slow-search"],
                slow_index_log_enabled=True, slow_index_log_group=groups["slow-index"],
                app_log_enabled=True, app_log_group=groups["application"],
            ),
            suppress_logs_resource_policy=True,
            enable_auto_software_update=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # The resource policy the L2 would write with a custom resource, as a native resource instead.
        stack = Stack.of(self)
        policy = logs.CfnResourcePolicy(self, "LogsPolicy", policy_name=f"{name}-opensearch-logs",
                                        policy_document=stack.to_json_string({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "es.amazonaws.com"},
                "Action": ["logs:PutLogEvents", "logs:CreateLogStream"],
                "Resource": [g.log_group_arn for g in groups.values()],
                "Condition": {"StringEquals": {"aws:SourceAccount": stack.account}},
            }],
        }))
        self.domain.node.add_dependency(policy)

    def grant(self, role: iam.IRole) -> None:
        """Read and write documents and indices over the domain's HTTPS API."""
        self.domain.grant_read_write(role)
        self.domain.grant_index_read_write("*", role)
