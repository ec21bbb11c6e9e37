"""Stacks composed from the construct library, all driven by the :class:`~stackwright.spec.model.System`.

Per environment (``prod`` unless asked otherwise) the app has, in deploy order:

1. ``<system>-<env>-global`` (us-east-1): Route 53 zone (the edge's public host), health checks of every
   region's origin, latency records for ``api.`` and failover records for ``writer.``. It depends on
   nothing, and the regional certificates are validated in its zone.
2. ``<system>-<env>-<region>-foundation`` per region: KMS keys, the access-log bucket, the backup vault
   and (in the DR region) the replica buckets. Nothing here depends on another region, so cross-region
   consumers (secret replicas, S3 replication, backup copies) find their keys and buckets in place.
3. ``<system>-<env>-<primary region>``: network, EKS, the writer database (and the Aurora Global
   Database), caches, queues, topics, search, buckets, repositories, WAF, certificate, secrets,
   backup plan, and an IAM role per service scoped to the resources it ``uses``.
4. ``<system>-<env>-<secondary region>`` per other region: the same, with read replicas of the
   database instead of a writer; deployed after the primary.

Cross-stack values travel as weak references (``Fn::GetStackOutput``), also across regions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aws_cdk import App, Aspects, Aws, CfnOutput, Environment, Stack, Tags
from aws_cdk import aws_backup as backup
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from constructs import Construct

from stackwright.resources import kind_of
from stackwright.spec.model import (
    BucketResource,
    QueueResource,
    Region,
    System,
)

from ...deploy import names as naming
from ...deploy import network, placement, scale
from ...deploy.environments import default_environment
from .constructs.backup import BackupPlan, BackupVault
from .constructs.buckets import AccessLogBucket, DataBucket
from .constructs.cache import Cache
from .constructs.cluster import EksCluster
from .constructs.database import Database
from .constructs.dns import Dns
from .constructs.identity import ServiceRoles
from .constructs.ingress import IngressSupport
from .constructs.keys import RegionalKeys
from .constructs.network import Network
from .constructs.queues import Queue
from .constructs.registry import Registry
from .constructs.scaler import ScalerRoles
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
        self.dr_region = placement.dr_region(self.system)

    @property
    def prefix(self) -> str:
        """``<system>-<env>``."""
        return naming.prefix(self.system, self.environment)

    @property
    def other_regions(self) -> list[str]:
        """Every region but the primary, in spec order."""
        return placement.other_regions(self.system)

    def is_primary(self, region: str) -> bool:
        """Whether ``region`` is the primary (writer) region."""
        return placement.is_primary(self.system, region)

    def hosts(self, name: str, region: str) -> bool:
        """Whether resource ``name`` is provisioned in ``region`` (:func:`stackwright.deploy.placement.hosts`)."""
        return placement.hosts(self.system, name, region)

    def bucket(self, name: str, region: str) -> str:
        """Physical name of bucket ``name`` (or ``access-logs``) in ``region``, account as a token."""
        return naming.bucket_name(self.system, self.environment, name, region, Aws.ACCOUNT_ID)

    def replica_regions(self, res: BucketResource) -> list[str]:
        """Regions holding a replica of a bucket (:func:`stackwright.deploy.placement.bucket_regions`)."""
        name = next(n for n, r in self.system.resources.items() if r is res)
        return placement.bucket_regions(self.system, name)[1:]

    def env(self, region: str) -> Environment:
        """The CDK environment of a stack in ``region``."""
        return Environment(account=self.account, region=region)


def _hook(ref: str) -> Callable[..., None]:
    """A kind's CDK hook named ``"package.module:function"``, imported on use (see ResourceKind.cdk_provision)."""
    module, _, attr = ref.partition(":")
    return cast(Callable[..., None], getattr(importlib.import_module(module), attr))


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
        self.keys = RegionalKeys(self, "Keys", alias_prefix=naming.key_alias_prefix(system, plan.environment))
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", name=plan.bucket("access-logs", region.name),
            retention_days=max(system.monitoring.log_retention_days, 90))
        self.vault = BackupVault(self, "Backup", name=naming.backup_vault_name(system, plan.environment),
                                 key=self.keys.backup)
        self.plan = plan
        self.region_spec = region
        self.replica_buckets: dict[str, DataBucket] = {}
        #: AWS services already allowed to use the data key (a kind's foundation hook grants each once).
        self.data_key_services: set[str] = set()
        for name, res in system.resources.items():
            if (foundation := kind_of(res).cdk_foundation) is not None:
                _hook(foundation)(self, name, res)


class RegionalStack(Stack):
    """Everything that runs in one region (see the module docstring)."""

    def __init__(self, scope: Construct, construct_id: str, *, plan: Plan, region: Region,
                 foundation: FoundationStack, zone: route53.IHostedZone,
                 primary_stack: RegionalStack | None = None) -> None:
        """``primary_stack`` is the primary region's stack (None when this is it): secondaries point
        at its endpoints for whatever has no copy in their region."""
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
        self.primary_stack = primary_stack or self

        self.network = Network(self, "Network", spec=system.network,
                               groups=network.subnet_groups(system, region.name),
                               azs=placement.availability_zones(region.name, system.network.azs),
                               vpc_cidr=region.vpc_cidr, nat_gateways=network.nat_gateways(system), keys=keys,
                               log_retention_days=days)
        self.cluster = EksCluster(self, "Eks", spec=system.cluster,
                                  name=naming.cluster_name(system, env, region.name), network=self.network,
                                  keys=keys, log_retention_days=days,
                                  pool_sizes={p.name: scale.node_pool(system, region.name, p.name)
                                              for p in system.cluster.node_pools})
        self.roles = ServiceRoles(
            self, "ServiceRoles", cluster=self.cluster, namespace=naming.namespace(system),
            service_accounts={s: naming.service_account(s) for s in system.services},
            role_names={s: naming.service_role_name(system, env, region.name, s) for s in system.services})
        self.scalers = self._scalers()
        self.replica_regions = replicas(self, plan.other_regions, naming.key_alias(system, env, "data")) \
            if primary else []

        self.databases: dict[str, Database] = {}
        self.caches: dict[str, Cache] = {}
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        self.buckets: dict[str, DataBucket] = {}
        self.search: dict[str, SearchDomain] = {}
        for name, res in system.resources.items():
            kind = kind_of(res)
            if kind.cdk_provision is not None and (kind.cdk_every_region or plan.hosts(name, region.name)):
                _hook(kind.cdk_provision)(self, name, res)

        for bucket in self.buckets.values():
            for event in bucket.spec.events:
                bucket.notify(event, self.queues[event.queue].queue)

        if primary:
            for service, svc in system.services.items():
                # Search lives in the primary region; its URL travels with the service's own secret.
                urls = {f"{n.replace('-', '_')}_url": f"https://{self.search[n].domain.domain_endpoint}"
                        for n in svc.uses if n in self.search}
                secret(self, f"ServiceSecret-{service}", name=naming.service_secret_name(system, env, service),
                       key=keys.data, description=f"Settings of service {service}", template=urls,
                       generate_key="signing_key", length=48, replica_regions=self.replica_regions or None)

        Registry(self, "Registry", repositories={s: naming.repository_name(system, s) for s in system.services},
                 key=keys.data, replicate_to=plan.other_regions if primary else [], prefix=system.name)

        self.waf: WebAcl | None = None
        if system.edge.waf is not None:
            self.waf = WebAcl(self, "Waf", spec=system.edge.waf, name=naming.web_acl_name(system, env), key=keys.logs,
                              log_retention_days=days)
        self.ingress = IngressSupport(
            self, "Ingress", host=naming.public_host(system, env), zone=zone,
            alt_names=list(dict.fromkeys([naming.api_host(system, env), naming.writer_host(system, env),
                                          naming.origin_host(system, env, region.name),
                                          *naming.route_hosts(system, env)])),
            log_bucket_name=naming.alb_log_bucket(system, env, region.name),
            access_logs=foundation.access_logs.bucket, retention_days=max(days, 90),
            ssm_prefix=naming.ssm_prefix(system, env),
            web_acl_arn=self.waf.acl.attr_arn if self.waf else None)

        if primary:
            resources: list[backup.BackupResource] = []
            for db in self.databases.values():
                if db.cluster is not None:
                    resources.append(backup.BackupResource.from_rds_database_cluster(db.cluster))
                elif db.instance is not None:
                    resources.append(backup.BackupResource.from_rds_database_instance(db.instance))
            resources += [backup.BackupResource.from_arn(b.bucket.bucket_arn) for b in self.buckets.values()]
            retention = max([d for r in system.resources.values()
                             if (d := kind_of(r).backup_retention_days(r)) is not None] or [7])
            BackupPlan(self, "Backup", vault=foundation.vault, retention_days=retention, resources=resources,
                       copy_to=plan.dr_region)

        for service in system.services:
            self._grant(service)
        self._outputs()

    # ------------------------------------------------------------------ permissions

    def users_of(self, resource: str) -> list[str]:
        """Services that use ``resource``, in spec order."""
        return [s for s, svc in self.plan.system.services.items() if resource in svc.uses]

    def _grant(self, service: str) -> None:
        """Give a service's role exactly what its ``uses`` need, in this region."""
        system, env = self.plan.system, self.plan.environment
        role = self.roles.role(service)
        secrets = [naming.service_secret_name(system, env, service)]
        for name in system.services[service].uses:
            res = system.resources[name]
            if (grant := kind_of(res).cdk_grant) is not None:
                _hook(grant)(self, role, service, name, res, secrets)
        grant_read_by_name(role, self, secrets, self.keys.data)

    def _scalers(self) -> ScalerRoles | None:
        """KEDA's roles for the workers that scale on queue depth (None when none does)."""
        plan, system, env, region = self.plan, self.plan.system, self.plan.environment, self.region_spec.name
        queues: dict[str, tuple[str, str]] = {}
        for service, svc in system.services.items():
            if svc.autoscale is None or not svc.autoscale.queue:
                continue
            name = svc.autoscale.queue
            res = system.resources[name]
            assert isinstance(res, QueueResource)
            hosted = region if plan.hosts(name, region) else plan.primary.name
            queues[service] = (naming.scaler_role_name(system, env, region, service),
                               self.arn("sqs", hosted, naming.queue_name(system, env, name)))
        if not queues:
            return None
        return ScalerRoles(self, "ScalerRoles", cluster=self.cluster, queues=queues,
                           operator_role_name=naming.keda_operator_role_name(system, env, region))

    def arn(self, service: str, region: str, resource: str) -> str:
        """ARN of ``resource`` of AWS ``service`` in ``region`` of this account."""
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"

    def remote_key(self, role: iam.IRole, region: str) -> None:
        """Use of another region's data key, matched by its alias (its ARN is not known here)."""
        alias = naming.key_alias(self.plan.system, self.plan.environment, "data")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
            resources=[self.arn("kms", region, "key/*")],
            conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}}))

    def _outputs(self) -> None:
        CfnOutput(self, "ClusterName", value=self.cluster.cluster.cluster_name)
        CfnOutput(self, "AdminRoleArn", value=self.cluster.admin_role.role_arn)
        if self.scalers is not None:
            CfnOutput(self, "KedaOperatorRoleArn", value=self.scalers.operator.role_arn,
                      description="KEDA Helm chart podIdentity.aws.irsa.roleArn")
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
        super().__init__(scope, construct_id, env=plan.env(placement.GLOBAL_REGION),
                         description=f"{plan.prefix} global DNS (stackwright)")
        _tag(self, plan)
        system = plan.system
        env = plan.environment
        keys = RegionalKeys(self, "Keys", alias_prefix=naming.global_key_alias_prefix(system, env), purposes=("logs",))
        self.dns = Dns(
            self, "Dns", edge=system.edge, zone_name=naming.public_host(system, env),
            regions={r.name: r.role for r in system.regions},
            origins={r.name: naming.origin_host(system, env, r.name) for r in system.regions},
            api_host=naming.api_host(system, env), writer_host=naming.writer_host(system, env),
            route_hosts=[h for h in naming.route_hosts(system, env) if h != naming.api_host(system, env)],
            health_path=naming.HEALTH_CHECK_PATH, logs_key=keys.logs,
            log_retention_days=system.monitoring.log_retention_days)


@dataclass
class Stacks:
    """The stacks of one rendered environment."""

    global_: GlobalStack
    foundations: dict[str, FoundationStack]
    regional: dict[str, RegionalStack]

    def all(self) -> list[Stack]:
        """Every stack, in deploy order."""
        return [self.global_, *self.foundations.values(), *self.regional.values()]


def build_stacks(app: App, system: System, environment: str | None = None,
                 account: str = naming.PLACEHOLDER_ACCOUNT) -> Stacks:
    """Add the stacks of ``system`` (one environment) to ``app`` and return them."""
    environment = environment or app.node.try_get_context("environment") or default_environment(system)
    if environment not in system.environments:
        raise ValueError(f"environment {environment!r} is not one of {', '.join(system.environments)}")
    plan = Plan(system=system, environment=environment, account=account)
    global_ = GlobalStack(app, naming.global_stack_name(system, environment), plan=plan)
    foundations = {
        r.name: FoundationStack(app, naming.foundation_stack_name(system, environment, r.name), plan=plan,
                                region=r)
        for r in system.regions
    }
    regional: dict[str, RegionalStack] = {}
    for r in [plan.primary, *[r for r in system.regions if r is not plan.primary]]:
        stack = RegionalStack(app, naming.regional_stack_name(system, environment, r.name), plan=plan, region=r,
                              foundation=foundations[r.name], zone=global_.dns.zone,
                              primary_stack=regional.get(plan.primary.name))
        stack.add_stack_dependency(global_)  # certificates are validated in the system's zone
        # Secret replicas, S3 replication and backup copies need every region's keys and buckets.
        for foundation in foundations.values():
            stack.add_stack_dependency(foundation)
        if r is not plan.primary:
            stack.add_stack_dependency(regional[plan.primary.name])  # global database secondaries join the primary
        regional[r.name] = stack
    Aspects.of(app).add(CheckovSkips())
    return Stacks(global_=global_, foundations=foundations, regional=regional)


def build_app(system: System, environment: str | None = None, account: str | None = None,
              outdir: str | None = None) -> tuple[App, Stacks]:
    """A CDK ``App`` with the feature flags, AZ context and the system's stacks."""
    account = account or naming.PLACEHOLDER_ACCOUNT
    app = App(context=app_context(system, account), outdir=outdir, analytics_reporting=False)
    return app, build_stacks(app, system, environment, account)
