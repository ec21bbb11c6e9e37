"""Redis: an ElastiCache replication group (there is no L2 construct, so L1 resources)."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from constructs import Construct

from stackwright.spec.model import RedisResource

from .keys import RegionalKeys
from .logs import log_group
from .network import Network
from .secrets import dynamic_reference

PORT = 6379
ENGINE_VERSION = "7.1"
SNAPSHOT_RETENTION_DAYS = 7


class Cache(Construct):
    """Multi-AZ Redis with automatic failover, encryption at rest (KMS) and in transit, the AUTH token
    from Secrets Manager (``token_secret_name``, field ``token``), daily snapshots and slow-log
    delivery to CloudWatch Logs.

    ``shards > 1`` turns on cluster mode. Automatic failover needs a replica per shard; with
    ``replicas_per_shard: 0`` the group is a single node per shard and cannot fail over.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: RedisResource,
        group_id: str,
        token_secret_name: str,
        network: Network,
        keys: RegionalKeys,
        clients: ec2.ISecurityGroup,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            description=f"Redis {group_id}: reachable from the EKS cluster only",
        )
        self.security_group.add_ingress_rule(clients, ec2.Port.tcp(PORT), "Redis from EKS nodes and pods")
        subnet_ids = network.vpc.select_subnets(
            subnet_group_name=network.data_subnets.subnet_group_name).subnet_ids
        subnets = elasticache.CfnSubnetGroup(self, "Subnets", description=f"{group_id} data subnets",
                                             subnet_ids=subnet_ids)
        slow_log = log_group(self, "SlowLog", name=None, days=log_retention_days, key=keys.logs)
        failover = spec.replicas_per_shard >= 1
        self.group = elasticache.CfnReplicationGroup(
            self,
            "Group",
            replication_group_id=group_id,
            replication_group_description=spec.description or group_id,
            engine="redis",
            engine_version=ENGINE_VERSION,
            cache_node_type=spec.node_type,
            num_node_groups=spec.shards,
            replicas_per_node_group=spec.replicas_per_shard,
            cluster_mode="enabled" if spec.shards > 1 else "disabled",
            automatic_failover_enabled=failover or spec.shards > 1,
            multi_az_enabled=failover,
            at_rest_encryption_enabled=True,
            kms_key_id=keys.data.key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=dynamic_reference(token_secret_name, "token"),
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[self.security_group.security_group_id],
            port=PORT,
            snapshot_retention_limit=SNAPSHOT_RETENTION_DAYS,
            snapshot_window="02:00-03:00",
            preferred_maintenance_window="sun:05:30-sun:06:30",
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                destination_type="cloudwatch-logs",
                destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                    cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                        log_group=slow_log.log_group_name)),
                log_format="json",
                log_type="slow-log",
            )],
        )

    @property
    def endpoint(self) -> str:
        """Host services connect to (configuration endpoint in cluster mode, else the primary)."""
        attr = "ConfigurationEndPoint.Address" if self.group.cluster_mode == "enabled" else "PrimaryEndPoint.Address"
        return self.group.get_att(attr).to_string()
