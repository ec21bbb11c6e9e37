"""PostgreSQL: Aurora (with Aurora Global Database for cross-region replicas) or RDS, per the spec.

In the primary region the writer cluster (or instance) is created with encryption, deletion protection,
the spec's backup retention (the point-in-time-restore window), IAM authentication, log exports,
isolated subnets and a snapshot on removal. With ``cross_region_replicas`` every secondary region gets
a read-only copy: an Aurora Global Database secondary cluster, or an RDS cross-region read replica.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import Duration, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from stackwright.spec.model import PostgresResource

from .keys import RegionalKeys
from .logs import log_group
from .network import Network

PORT = 5432
ADMIN_USER = "stackwright_admin"
BACKUP_WINDOW = "03:00-04:00"
MAINTENANCE_WINDOW = "sun:04:30-sun:05:30"

#: Server settings: TLS only, slow-query and DDL logging (exported to CloudWatch Logs).
PARAMETERS = {
    "rds.force_ssl": "1",
    "log_statement": "ddl",
    "log_min_duration_statement": "1000",
    "log_connections": "1",
    "log_disconnections": "1",
}


def _major(version: str) -> str:
    return version.split(".")[0]


def _instance_type(instance_class: str) -> ec2.InstanceType:
    return ec2.InstanceType(instance_class.removeprefix("db."))


class Database(Construct):
    """One ``postgres`` resource in one region.

    ``role`` is ``primary`` (the writer, plus the Aurora Global Database when replicas are wanted) or
    ``replica`` (a read-only copy of the primary region's database).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: PostgresResource,
        role: Literal["primary", "replica"],
        identifier: str,
        global_identifier: str,
        primary_region: str,
        network: Network,
        keys: RegionalKeys,
        clients: ec2.ISecurityGroup,
        log_retention_days: int,
        admin_secret_name: str,
        replica_regions: list[sm.ReplicaRegion],
    ) -> None:
        super().__init__(scope, construct_id)
        if spec.engine == "external":
            raise ValueError("an external database is not provisioned; do not build a Database for it")
        self.spec = spec
        self.role = role
        self.identifier = identifier
        self.cluster: rds.DatabaseCluster | None = None
        self.instance: rds.DatabaseInstance | None = None
        self.replica: rds.CfnDBInstance | None = None
        self.global_cluster: rds.CfnGlobalCluster | None = None

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            description=f"PostgreSQL {identifier}: reachable from the EKS cluster only",
        )
        self.security_group.add_ingress_rule(clients, ec2.Port.tcp(PORT), "PostgreSQL from EKS nodes and pods")

        aurora = spec.engine == "aurora-postgresql"
        kind = "cluster" if aurora else "instance"
        self.log_group = log_group(self, "Logs", name=f"/aws/rds/{kind}/{identifier}/postgresql",
                                   days=log_retention_days, key=keys.logs)
        monitoring_role = iam.Role(self, "MonitoringRole", assumed_by=iam.ServicePrincipal(
            "monitoring.rds.amazonaws.com"), managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonRDSEnhancedMonitoringRole")])

        if aurora:
            self._aurora(network, keys, monitoring_role, admin_secret_name, replica_regions, global_identifier)
        elif role == "primary":
            self._rds_primary(network, keys, monitoring_role, admin_secret_name, replica_regions)
        else:
            self._rds_replica(network, keys, monitoring_role, primary_region)

    # ------------------------------------------------------------------ Aurora

    def _aurora(self, network: Network, keys: RegionalKeys, monitoring_role: iam.IRole, admin_secret_name: str,
                replica_regions: list[sm.ReplicaRegion], global_identifier: str) -> None:
        spec = self.spec
        engine = rds.DatabaseClusterEngine.aurora_postgres(
            version=rds.AuroraPostgresEngineVersion.of(spec.version, _major(spec.version)))
        instance_type = _instance_type(spec.instance_class)

        def instance(name: str, tier: int) -> rds.IClusterInstance:
            return rds.ClusterInstance.provisioned(
                name,
                instance_type=instance_type,
                promotion_tier=tier,
                publicly_accessible=False,
                auto_minor_version_upgrade=True,
                enable_performance_insights=True,
                performance_insight_encryption_key=keys.data,
            )

        # In-region readers: the spec's count, and at least one in another AZ when multi_az.
        readers = max(spec.instances - 1, 1 if spec.multi_az else 0)
        replica = self.role == "replica"
        if replica:
            # A global secondary has no credentials of its own (they come from the primary); the
            # placeholder below is removed from the template right after the cluster is built.
            credentials = rds.Credentials.from_password(ADMIN_USER, SecretValue.unsafe_plain_text("unused"))
        else:
            credentials = rds.Credentials.from_generated_secret(
                ADMIN_USER, secret_name=admin_secret_name, encryption_key=keys.data,
                replica_regions=replica_regions or None)
        parameter_group = rds.ParameterGroup(self, "Parameters", engine=engine, parameters=PARAMETERS,
                                             description=f"{self.identifier} cluster parameters")
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=engine,
            cluster_identifier=self.identifier,
            credentials=credentials,
            default_database_name=None if replica else spec.database,
            writer=instance("writer", 0),
            readers=[instance(f"reader{i + 1}", 1) for i in range(readers)],
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            security_groups=[self.security_group],
            port=PORT,
            parameter_group=parameter_group,
            storage_encrypted=True,
            storage_encryption_key=keys.data,
            deletion_protection=True,
            iam_authentication=True,
            backup=rds.BackupProps(retention=Duration.days(spec.backup_retention_days), preferred_window=BACKUP_WINDOW),
            preferred_maintenance_window=MAINTENANCE_WINDOW,
            cloudwatch_logs_exports=["postgresql"],
            copy_tags_to_snapshot=True,
            monitoring_interval=Duration.seconds(60),
            monitoring_role=monitoring_role,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        self.cluster.node.add_dependency(self.log_group)
        cfn = self.cluster.node.default_child
        assert isinstance(cfn, rds.CfnDBCluster)
        if replica:
            cfn.add_property_deletion_override("MasterUsername")
            cfn.add_property_deletion_override("MasterUserPassword")
            cfn.add_property_override("GlobalClusterIdentifier", global_identifier)
            # Services in this region write through the local cluster; Aurora forwards to the writer.
            cfn.add_property_override("EnableGlobalWriteForwarding", True)
        elif spec.cross_region_replicas:
            self.global_cluster = rds.CfnGlobalCluster(
                self,
                "Global",
                global_cluster_identifier=global_identifier,
                source_db_cluster_identifier=self.cluster.cluster_identifier,
                deletion_protection=True,
            )

    # ------------------------------------------------------------------ RDS

    def _subnet_group(self, network: Network) -> rds.SubnetGroup:
        return rds.SubnetGroup(self, "Subnets", vpc=network.vpc, vpc_subnets=network.data_subnets,
                               description=f"{self.identifier} isolated subnets",
                               removal_policy=RemovalPolicy.RETAIN)

    def _rds_primary(self, network: Network, keys: RegionalKeys, monitoring_role: iam.IRole, admin_secret_name: str,
                     replica_regions: list[sm.ReplicaRegion]) -> None:
        spec = self.spec
        engine = rds.DatabaseInstanceEngine.postgres(
            version=rds.PostgresEngineVersion.of(spec.version, _major(spec.version)))
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=engine,
            instance_identifier=self.identifier,
            instance_type=_instance_type(spec.instance_class),
            credentials=rds.Credentials.from_generated_secret(
                ADMIN_USER, secret_name=admin_secret_name, encryption_key=keys.data,
                replica_regions=replica_regions or None),
            database_name=spec.database,
            multi_az=spec.multi_az,
            allocated_storage=spec.storage_gb,
            max_allocated_storage=spec.storage_gb * 4,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            storage_encryption_key=keys.data,
            vpc=network.vpc,
            subnet_group=self._subnet_group(network),
            security_groups=[self.security_group],
            port=PORT,
            publicly_accessible=False,
            parameters=PARAMETERS,
            deletion_protection=True,
            iam_authentication=True,
            backup_retention=Duration.days(spec.backup_retention_days),
            preferred_backup_window=BACKUP_WINDOW,
            preferred_maintenance_window=MAINTENANCE_WINDOW,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            enable_performance_insights=True,
            performance_insight_encryption_key=keys.data,
            monitoring_interval=Duration.seconds(60),
            monitoring_role=monitoring_role,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        self.instance.node.add_dependency(self.log_group)

    def _rds_replica(self, network: Network, keys: RegionalKeys, monitoring_role: iam.IRole,
                     primary_region: str) -> None:
        spec = self.spec
        stack = Stack.of(self)
        source = f"arn:{stack.partition}:rds:{primary_region}:{stack.account}:db:{self.identifier}"
        self.replica = rds.CfnDBInstance(
            self,
            "Replica",
            db_instance_identifier=self.identifier,
            source_db_instance_identifier=source,
            source_region=primary_region,
            db_instance_class=spec.instance_class,
            db_subnet_group_name=self._subnet_group(network).subnet_group_name,
            vpc_security_groups=[self.security_group.security_group_id],
            # Encryption is inherited from the (encrypted) source; CloudFormation rejects StorageEncrypted
            # on a read replica, so only the destination region's key is given.
            kms_key_id=keys.data.key_arn,
            multi_az=spec.multi_az,
            publicly_accessible=False,
            enable_iam_database_authentication=True,
            enable_cloudwatch_logs_exports=["postgresql", "upgrade"],
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            enable_performance_insights=True,
            performance_insights_kms_key_id=keys.data.key_arn,
            monitoring_interval=60,
            monitoring_role_arn=monitoring_role.role_arn,
            deletion_protection=True,
        )
        self.replica.apply_removal_policy(RemovalPolicy.SNAPSHOT)
        self.replica.node.add_dependency(self.log_group)

    # ------------------------------------------------------------------ endpoints

    @property
    def writer_endpoint(self) -> str:
        """Host that accepts writes from this region (an Aurora secondary forwards them)."""
        if self.cluster is not None:
            return self.cluster.cluster_endpoint.hostname
        if self.instance is not None:
            return self.instance.db_instance_endpoint_address
        raise ValueError("an RDS read replica takes no writes; use the primary's endpoint")

    @property
    def reader_endpoint(self) -> str:
        """Host for read-only queries in this region."""
        if self.cluster is not None:
            return self.cluster.cluster_read_endpoint.hostname
        if self.instance is not None:
            return self.instance.db_instance_endpoint_address
        assert self.replica is not None
        return self.replica.attr_endpoint_address

    # ------------------------------------------------------------------ grants

    def grant_connect(self, role: iam.IRole, db_user: str) -> None:
        """IAM database authentication for ``db_user`` (``rds-db:connect``)."""
        stack = Stack.of(self)
        if self.cluster is not None:
            self.cluster.grant_connect(role, db_user)
            return
        if self.instance is not None:
            self.instance.grant_connect(role, db_user)
            return
        assert self.replica is not None
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["rds-db:connect"],
            resources=[f"arn:{stack.partition}:rds-db:{stack.region}:{stack.account}:dbuser:"
                       f"{self.replica.attr_dbi_resource_id}/{db_user}"],
        ))
