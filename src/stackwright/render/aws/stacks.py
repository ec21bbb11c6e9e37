"""Stacks composed from the construct library, all driven by the :class:`~stackwright.spec.model.System`.

Per environment (``prod`` unless asked otherwise) the app has, in deploy order:

1. ``<system>-<env>-<region>-foundation`` per region: KMS keys, the access-log bucket, the backup vault
   and (in the DR region) the replica buckets. Nothing here depends on another region, so cross-region
   consumers (secret replicas, S3 replication, backup copies) find their keys and buckets in place.
2. ``<system>-<env>-<primary region>``: network, EKS, the writer database (and the Aurora Global
   Database), caches, queues, topics, search, buckets, repositories, WAF, secrets, backup plan, and a
   Pod Identity role per service scoped to the resources it ``uses``.
3. ``<system>-<env>-<secondary region>`` per other region: the same, with read replicas of the
   database instead of a writer; deployed after the primary.
4. ``<system>-<env>-global`` (us-east-1): Route 53 zone, health checks, latency and failover records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import App, Aspects, CfnOutput, Environment, Stack, Tags
from aws_cdk import aws_backup as backup
from aws_cdk import aws_iam as iam
from constructs import Construct

from stackwright.spec.model import (
    BucketResource,
    PostgresResource,
    QueueResource,
    RedisResource,
    Region,
    SearchResource,
    System,
    TopicResource,
)

from . import naming
from .constructs.backup import BackupPlan, BackupVault
from .constructs.buckets import AccessLogBucket, DataBucket, bucket_name
from .constructs.cache import Cache
from .constructs.cluster import EksCluster
from .constructs.database import Database
from .constructs.dns import Dns
from .constructs.identity import ServiceRoles
from .constructs.keys import RegionalKeys
from .constructs.network import Network
from .constructs.queues import Queue
from .constructs.registry import Registry
from .constructs.search import SearchDomain
from .constructs.secrets import grant_read_by_name, replicas, secret
from .constructs.topics import Topic
from .constructs.waf import WebAcl
from .context import app_context
from .skips import CheckovSkips


@dataclass
class Plan:
    """Where each part of the system lives, decided once from the spec."""

    system: System
    environment: str
    account: str
    primary: Region = field(init=False)
    dr_region: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.primary = self.system.primary_region
        others = [r for r in self.system.regions if r is not self.primary]
        standby = [r for r in others if r.role == "standby"]
        self.dr_region = (standby or others)[0].name if others else None

    @property
    def prefix(self) -> str:
        """``<system>-<env>``."""
        return naming.prefix(self.system, self.environment)

    @property
    def other_regions(self) -> list[str]:
        """Every region but the primary, in spec order."""
        return [r.name for r in self.system.regions if r is not self.primary]

    def is_primary(self, region: str) -> bool:
        """Whether ``region`` is the primary (writer) region."""
        return region == self.primary.name

    def hosts(self, name: str, region: str) -> bool:
        """Whether resource ``name`` is provisioned in ``region``."""
        res = self.system.resources[name]
        if isinstance(res, PostgresResource):
            if res.engine == "external":
                return self.is_primary(region)
            return self.is_primary(region) or res.cross_region_replicas
        if isinstance(res, RedisResource | QueueResource):
            return res.per_region or self.is_primary(region)
        if isinstance(res, TopicResource):
            return True
        return self.is_primary(region)

    def env(self, region: str) -> Environment:
        """The CDK environment of a stack in ``region``."""
        return Environment(account=self.account, region=region)


def _tag(stack: Stack, plan: Plan) -> None:
    Tags.of(stack).add("stackwright:system", plan.system.name)
    Tags.of(stack).add("stackwright:environment", plan.environment)


class FoundationStack(Stack):
    """Per-region keys, access-log bucket, backup vault and DR replica buckets (no cross-region inputs)."""

    def __init__(self, scope: Construct, construct_id: str, *, plan: Plan, region: Region) -> None:
        super().__init__(scope, construct_id, env=plan.env(region.name),
                         description=f"{plan.prefix} {region.name} foundation (stackwright)")
        _tag(self, plan)
        system = plan.system
        self.keys = RegionalKeys(self, "Keys", alias_prefix=f"alias/{plan.prefix}")
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", name=bucket_name(plan.prefix, "access-logs", region.name),
            retention_days=max(system.monitoring.log_retention_days, 90))
        self.vault = BackupVault(self, "Backup", name=naming.backup_vault_name(system, plan.environment),
                                 key=self.keys.backup)
        self.replica_buckets: dict[str, DataBucket] = {}
        if region.name == plan.dr_region:
            for name, res in system.resources_of("bucket").items():
                assert isinstance(res, BucketResource)
                if res.versioned:
                    self.replica_buckets[name] = DataBucket(
                        self, f"ReplicaBucket-{name}", spec=res, name=bucket_name(plan.prefix, name, region.name),
                        key=self.keys.data, access_logs=self.access_logs.bucket, log_prefix=name)


class RegionalStack(Stack):
    """Everything that runs in one region (see the module docstring)."""

    def __init__(self, scope: Construct, construct_id: str, *, plan: Plan, region: Region,
                 foundation: FoundationStack) -> None:
        super().__init__(scope, construct_id, env=plan.env(region.name),
                         description=f"{plan.prefix} {region.name} ({region.role}) (stackwright)")
        _tag(self, plan)
        self.plan = plan
        self.region_spec = region
        system = plan.system
        env = plan.environment
        days = system.monitoring.log_retention_days
        keys = foundation.keys
        primary = plan.is_primary(region.name)
        self.keys = keys
        self.foundation = foundation

        self.network = Network(self, "Network", spec=system.network, region=region,
                               azs=naming.availability_zones(region.name, system.network.azs), keys=keys,
                               log_retention_days=days)
        self.cluster = EksCluster(self, "Eks", spec=system.cluster,
                                  name=naming.cluster_name(system, env, region.name), network=self.network,
                                  keys=keys, log_retention_days=days)
        self.roles = ServiceRoles(self, "ServiceRoles", cluster=self.cluster, namespace=naming.namespace(system),
                                  service_accounts={s: naming.service_account(s) for s in system.services})
        clients = self.cluster.security_group
        replica_regions = replicas(self, plan.other_regions, naming.key_alias(system, env, "data")) if primary else []

        self.databases: dict[str, Database] = {}
        self.caches: dict[str, Cache] = {}
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        self.buckets: dict[str, DataBucket] = {}
        self.search: dict[str, SearchDomain] = {}
        for name, res in system.resources.items():
            if not plan.hosts(name, region.name):
                continue
            if isinstance(res, PostgresResource):
                if res.engine == "external":
                    secret(self, f"ExternalUrl-{name}", name=naming.external_url_secret_name(system, env, name),
                           key=keys.data, description=f"URL of the external database {name} (set by an operator)",
                           generate_key="placeholder", replica_regions=replica_regions or None)
                    continue
                self.databases[name] = Database(
                    self, f"Db-{name}", spec=res, role="primary" if primary else "replica",
                    identifier=naming.db_cluster_identifier(system, env, name),
                    global_identifier=naming.global_db_identifier(system, env, name),
                    primary_region=plan.primary.name, network=self.network, keys=keys, clients=clients,
                    log_retention_days=days, admin_secret_name=naming.db_admin_secret_name(system, env, name),
                    replica_regions=replica_regions)
                if primary:
                    for service in self._users_of(name):
                        secret(self, f"DbUser-{name}-{service}",
                               name=naming.db_user_secret_name(system, env, name, service), key=keys.data,
                               description=f"Login of service {service} to database {name}",
                               template={"username": service.replace("-", "_")},
                               replica_regions=replica_regions or None)
            elif isinstance(res, RedisResource):
                self.caches[name] = Cache(
                    self, f"Cache-{name}", spec=res, group_id=naming.redis_group_id(system, env, name),
                    auth_secret_name=naming.redis_auth_secret_name(system, env, name), network=self.network,
                    keys=keys, clients=clients, log_retention_days=days)
            elif isinstance(res, QueueResource):
                self.queues[name] = Queue(
                    self, f"Queue-{name}", spec=res, name=naming.queue_name(system, env, name, res),
                    dlq_name=naming.queue_name(system, env, name, res, dlq=True), key=keys.data)
            elif isinstance(res, TopicResource):
                self.topics[name] = Topic(self, f"Topic-{name}", spec=res, name=naming.topic_name(system, env, name),
                                          key=keys.data)
            elif isinstance(res, BucketResource):
                dr = plan.dr_region
                # Unversioned buckets (the spec's choice) get their own id so the skips file can name them.
                kind = "Bucket" if res.versioned else "UnversionedBucket"
                self.buckets[name] = DataBucket(
                    self, f"{kind}-{name}", spec=res, name=bucket_name(plan.prefix, name, region.name),
                    key=keys.data, access_logs=foundation.access_logs.bucket, log_prefix=name,
                    replicate_to=(dr, bucket_name(plan.prefix, name, dr), keys.alias_arn("data", dr)) if dr else None)
            elif isinstance(res, SearchResource):
                self.search[name] = SearchDomain(
                    self, f"Search-{name}", spec=res, name=naming.search_domain_name(system, env, name),
                    network=self.network, keys=keys, clients=clients, log_retention_days=days,
                    azs=system.network.azs)

        if primary:
            for service in system.services:
                secret(self, f"ServiceSecret-{service}", name=naming.service_secret_name(system, env, service),
                       key=keys.data, description=f"Settings of service {service}", generate_key="signing_key",
                       length=48, replica_regions=replica_regions or None)

        Registry(self, "Registry", repositories={s: naming.repository_name(system, s) for s in system.services},
                 key=keys.data, replicate_to=plan.other_regions if primary else [], prefix=system.name)

        self.waf: WebAcl | None = None
        if system.edge.waf is not None:
            self.waf = WebAcl(self, "Waf", spec=system.edge.waf, name=naming.web_acl_name(system, env), key=keys.logs,
                              log_retention_days=days)

        if primary:
            resources: list[backup.BackupResource] = []
            for db in self.databases.values():
                if db.cluster is not None:
                    resources.append(backup.BackupResource.from_rds_database_cluster(db.cluster))
                elif db.instance is not None:
                    resources.append(backup.BackupResource.from_rds_database_instance(db.instance))
            resources += [backup.BackupResource.from_arn(b.bucket.bucket_arn) for b in self.buckets.values()]
            retention = max([r.backup_retention_days for r in system.resources.values()
                             if isinstance(r, PostgresResource)] or [7])
            BackupPlan(self, "Backup", vault=foundation.vault, retention_days=retention, resources=resources,
                       copy_to=plan.dr_region)

        for service in system.services:
            self._grant(service)
        self._outputs()

    # ------------------------------------------------------------------ permissions

    def _users_of(self, resource: str) -> list[str]:
        return [s for s, svc in self.plan.system.services.items() if resource in svc.uses]

    def _grant(self, service: str) -> None:
        """Give a service's role exactly what its ``uses`` need, in this region."""
        plan, system, env = self.plan, self.plan.system, self.plan.environment
        role = self.roles.role(service)
        region = self.region_spec.name
        secrets = [naming.service_secret_name(system, env, service)]
        for name in system.services[service].uses:
            res = system.resources[name]
            local = plan.hosts(name, region)
            if isinstance(res, PostgresResource):
                if res.engine == "external":
                    secrets.append(naming.external_url_secret_name(system, env, name))
                    continue
                secrets.append(naming.db_user_secret_name(system, env, name, service))
                db_user = service.replace("-", "_")
                if local:
                    self.databases[name].grant_connect(role, db_user)
                else:
                    role.add_to_principal_policy(iam.PolicyStatement(
                        actions=["rds-db:connect"],
                        resources=[self._arn("rds-db", plan.primary.name, f"dbuser:*/{db_user}")]))
                if res.per_tenant:
                    tenants = naming.tenant_secret_prefix(system, env, name)
                    role.add_to_principal_policy(iam.PolicyStatement(
                        actions=["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                                 "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                                 "secretsmanager:TagResource"],
                        resources=[self._arn("secretsmanager", region, f"secret:{tenants}*")]))
            elif isinstance(res, RedisResource):
                if local:
                    secrets.append(naming.redis_auth_secret_name(system, env, name))
                else:
                    self._remote_secret(role, naming.redis_auth_secret_name(system, env, name))
            elif isinstance(res, QueueResource):
                if local:
                    self.queues[name].grant(role)
                else:
                    names = [naming.queue_name(system, env, name, res), naming.queue_name(system, env, name, res, True)]
                    role.add_to_principal_policy(iam.PolicyStatement(
                        actions=["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                                 "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                        resources=[self._arn("sqs", plan.primary.name, n) for n in names]))
                    self._remote_key(role, plan.primary.name)
            elif isinstance(res, TopicResource):
                self.topics[name].grant(role)
            elif isinstance(res, BucketResource):
                if local:
                    self.buckets[name].bucket.grant_read_write(role)
                    continue
                # Buckets live in the primary region (and a replica in the DR region).
                stores = [(plan.primary.name, bucket_name(plan.prefix, name, plan.primary.name))]
                if region == plan.dr_region and res.versioned:
                    stores.append((region, bucket_name(plan.prefix, name, region)))
                for store_region, bucket in stores:
                    role.add_to_principal_policy(iam.PolicyStatement(
                        actions=["s3:GetObject*", "s3:PutObject", "s3:DeleteObject*", "s3:AbortMultipartUpload"],
                        resources=[f"arn:{self.partition}:s3:::{bucket}/*"]))
                    role.add_to_principal_policy(iam.PolicyStatement(
                        actions=["s3:ListBucket", "s3:GetBucketLocation"],
                        resources=[f"arn:{self.partition}:s3:::{bucket}"]))
                    self._remote_key(role, store_region)
            elif isinstance(res, SearchResource):
                if local:
                    self.search[name].grant(role)
                else:
                    domain = naming.search_domain_name(system, env, name)
                    role.add_to_principal_policy(iam.PolicyStatement(
                        actions=["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"],
                        resources=[self._arn("es", plan.primary.name, f"domain/{domain}/*")]))
        grant_read_by_name(role, self, secrets, self.keys.data)

    def _arn(self, service: str, region: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"

    def _remote_secret(self, role: iam.IRole, name: str) -> None:
        primary = self.plan.primary.name
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[self._arn("secretsmanager", primary, f"secret:{name}-??????")]))
        self._remote_key(role, primary)

    def _remote_key(self, role: iam.IRole, region: str) -> None:
        """Use of another region's data key, matched by its alias (its ARN is not known here)."""
        alias = naming.key_alias(self.plan.system, self.plan.environment, "data")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
            resources=[self._arn("kms", region, "key/*")],
            conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}}))

    def _outputs(self) -> None:
        CfnOutput(self, "ClusterName", value=self.cluster.cluster.cluster_name)
        CfnOutput(self, "AdminRoleArn", value=self.cluster.admin_role.role_arn)
        if self.waf is not None:
            CfnOutput(self, "WebAclArn", value=self.waf.acl.attr_arn,
                      description="alb.ingress.kubernetes.io/wafv2-acl-arn")
        for name, queue in self.queues.items():
            CfnOutput(self, f"QueueUrl-{name}", value=queue.queue.queue_url)
        for name, db in self.databases.items():
            if db.cluster is not None:
                CfnOutput(self, f"DbEndpoint-{name}", value=db.cluster.cluster_endpoint.hostname)
                CfnOutput(self, f"DbReaderEndpoint-{name}", value=db.cluster.cluster_read_endpoint.hostname)
        for name, cache in self.caches.items():
            attr = "ConfigurationEndPoint.Address" if cache.group.cluster_mode == "enabled" \
                else "PrimaryEndPoint.Address"
            CfnOutput(self, f"RedisEndpoint-{name}", value=cache.group.get_att(attr).to_string())


class GlobalStack(Stack):
    """Route 53 for the whole system (in us-east-1, where query logs and DNSSEC keys must be)."""

    def __init__(self, scope: Construct, construct_id: str, *, plan: Plan) -> None:
        super().__init__(scope, construct_id, env=plan.env(naming.GLOBAL_REGION),
                         description=f"{plan.prefix} global DNS (stackwright)")
        _tag(self, plan)
        system = plan.system
        keys = RegionalKeys(self, "Keys", alias_prefix=f"alias/{plan.prefix}-global", purposes=("logs",))
        self.dns = Dns(
            self, "Dns", edge=system.edge, regions={r.name: r.role for r in system.regions},
            origins={r.name: naming.origin_host(system, r.name) for r in system.regions},
            api_host=naming.api_host(system), writer_host=naming.writer_host(system),
            health_path=naming.HEALTH_CHECK_PATH, logs_key=keys.logs,
            log_retention_days=system.monitoring.log_retention_days)


@dataclass
class Stacks:
    """The stacks of one rendered environment."""

    foundations: dict[str, FoundationStack]
    regional: dict[str, RegionalStack]
    global_: GlobalStack

    def all(self) -> list[Stack]:
        """Every stack, in deploy order."""
        return [*self.foundations.values(), *self.regional.values(), self.global_]


def build_stacks(app: App, system: System, environment: str | None = None,
                 account: str = naming.PLACEHOLDER_ACCOUNT) -> Stacks:
    """Add the stacks of ``system`` (one environment) to ``app`` and return them."""
    environment = environment or app.node.try_get_context("environment") or naming.default_environment(system)
    if environment not in system.environments:
        raise ValueError(f"environment {environment!r} is not one of {', '.join(system.environments)}")
    plan = Plan(system=system, environment=environment, account=account)
    foundations = {
        r.name: FoundationStack(app, f"{naming.regional_stack_name(system, environment, r)}-foundation", plan=plan,
                                region=r)
        for r in system.regions
    }
    regional: dict[str, RegionalStack] = {}
    for r in [plan.primary, *[r for r in system.regions if r is not plan.primary]]:
        stack = RegionalStack(app, naming.regional_stack_name(system, environment, r), plan=plan, region=r,
                              foundation=foundations[r.name])
        # Secret replicas, S3 replication and backup copies need every region's keys and buckets.
        for foundation in foundations.values():
            stack.add_stack_dependency(foundation)
        if r is not plan.primary:
            stack.add_stack_dependency(regional[plan.primary.name])  # global database secondaries join the primary
        regional[r.name] = stack
    global_ = GlobalStack(app, naming.global_stack_name(system, environment), plan=plan)
    Aspects.of(app).add(CheckovSkips())
    return Stacks(foundations=foundations, regional=regional, global_=global_)


def build_app(system: System, environment: str | None = None, account: str | None = None,
              outdir: str | None = None) -> tuple[App, Stacks]:
    """A CDK ``App`` with the feature flags, AZ context and the system's stacks."""
    account = account or naming.PLACEHOLDER_ACCOUNT
    app = App(context=app_context(system, account), outdir=outdir, analytics_reporting=False)
    return app, build_stacks(app, system, environment, account)
