"""PostgreSQL: embedded (pgserver) locally, Aurora or RDS PostgreSQL in AWS, or an external server.

Per-tenant databases. ``per_tenant: true`` gives every tenant its own database on the server, created
by the service at run time (``Service.tenant_databases``), each with its own connection pool. ``tenants``
sizes that: ``max`` tenants at most, ``pool`` per tenant (defaults min 2 / max 20, seed 001's figures),
``migrations`` the folder of .sql files for each new tenant database, and ``connection_budget`` the most
connections one process may hold over all its tenants' pools. The folder is validated here; the service
applies it with ``stackwright.runtime.db.apply_migrations`` after ``create`` (the runtime does not read
it by itself yet). Services get ``<DB>_POOL_MIN`` / ``<DB>_POOL_MAX`` from ``tenants.pool``,
``<DB>_TENANTS_MAX`` and, when set, ``<DB>_CONNECTION_BUDGET``. The runtime
(``stackwright.runtime.db.TenantDatabases``) opens ``pool.min`` connections when a tenant's pool opens,
grows it on demand up to ``pool.max``, closes connections idle for a minute, and counts the connections
actually held against the budget: when it is full, an idle connection of the least recently used tenant
is closed first (one in use never is), so many quiet tenants share one budget.

Plan: a process of a per-tenant database's user opens up to :func:`connections_per_process`
(``tenants.max x pool.max``, bounded by the budget; one for a service in ``tenants.admin_only``, which
only creates tenant databases and roles through the admin URL); the connection check multiplies that by its pods
and flags a HIGH finding when the total exceeds the instance's ``max_connections`` and no budget bounds it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..spec.errors import did_you_mean
from ..spec.strict import Strict
from .base import CostContext, Fail, LocalContext, ResourceKind

#: Connections a process of a ``tenants.admin_only`` service holds: one admin connection at a time.
ADMIN_ONLY_CONNECTIONS = 1


def connections_per_process(res: PostgresResource, service: str | None = None) -> int:
    """Connections one process of a service using ``res`` may open: ``pool.max``, or for a per-tenant
    database with ``tenants`` every tenant's pool (``tenants.max x tenants.pool.max``) bounded by
    ``tenants.connection_budget``; a service listed in ``tenants.admin_only`` opens no tenant pool
    (:data:`ADMIN_ONLY_CONNECTIONS`)."""
    if res.tenants is None:
        return res.pool.max
    if service is not None and service in res.tenants.admin_only:
        return ADMIN_ONLY_CONNECTIONS
    every = res.tenants.max * res.tenants.pool.max
    return min(every, res.tenants.connection_budget) if res.tenants.connection_budget else every


class Pool(Strict):
    min: int = Field(2, ge=0)
    max: int = Field(20, ge=1)


class Tenants(Strict):
    """How many tenant databases a per-tenant PostgreSQL holds, and their pools."""

    max: int = Field(ge=1, description="most tenants (one database each) the system serves")
    migrations: str | None = Field(None, description="folder of .sql files applied to every new tenant database, "
                                                     "relative to system.yaml")
    pool: Pool = Field(default_factory=Pool, description="connection pool of each tenant's database, per process: "
                                                          "min connections opened with it, at most max; idle ones "
                                                          "close after a minute")
    connection_budget: int | None = Field(
        None, ge=1, description="most connections one process holds over all its tenant pools, counted as held (the "
                                "runtime closes idle connections of the least recently used tenant first to stay "
                                "within it); unset: tenants.max x pool.max")
    admin_only: list[str] = Field(
        default_factory=list, description="services that use this database only through its admin URL, one "
                                          "connection at a time (creating tenant databases and roles): they open no "
                                          "tenant pool, so the plan counts one connection per process for them")

    @model_validator(mode="after")
    def _budget_fits_a_pool(self) -> Tenants:
        if self.pool.min > self.pool.max:
            raise ValueError(f"tenants.pool.min ({self.pool.min}) is greater than tenants.pool.max ({self.pool.max})")
        if self.connection_budget is not None and self.connection_budget < self.pool.max:
            raise ValueError(f"tenants.connection_budget ({self.connection_budget}) cannot hold one tenant's pool "
                             f"(pool.max {self.pool.max})")
        return self


class PostgresResource(Strict):
    """PostgreSQL: embedded locally, Aurora/RDS in AWS."""

    kind: Literal["postgres"]
    description: str = ""
    engine: Literal["aurora-postgresql", "rds-postgresql", "external"] = "aurora-postgresql"
    version: str = "16.9"
    instance_class: str = "db.r6g.large"
    instances: int = Field(2, ge=1, description="writer plus in-region readers")
    multi_az: bool = True
    cross_region_replicas: bool = False
    storage_gb: int = Field(100, ge=1)
    backup_retention_days: int = Field(7, ge=1, le=35)
    database: str = "app"
    per_tenant: bool = False
    tenants: Tenants | None = Field(None, description="tenant count, per-tenant pool, migrations and per-process "
                                                      "connection budget of a per_tenant database")
    pool: Pool = Field(default_factory=Pool)
    migrations: str | None = None
    monthly_io_millions: float = Field(0, ge=0)


# Recovery figures (typical, worst) in seconds, from AWS documentation as of 2025-01 (plan's failure analysis).
#: Aurora in-region failover to a reader (shared storage: no data loss).
AURORA_FAILOVER = (30.0, 60.0)
#: Aurora without a reader: a new writer is created, "typically under 10 minutes".
AURORA_RECREATE = (600.0, 900.0)
#: RDS Multi-AZ failover to the synchronous standby (no data loss).
RDS_MULTI_AZ = (60.0, 120.0)
#: RDS single-AZ: point-in-time restore ...
RDS_RESTORE = (1800.0, 3600.0)
#: ... losing up to this many seconds of writes (the transaction log upload interval).
RDS_PITR_LOSS_S = 300.0
#: Aurora Global Database / cross-region replica promotion ...
CROSS_REGION_PROMOTION = (60.0, 300.0)
#: ... losing about this many seconds of writes (replication lag).
CROSS_REGION_LAG_S = 1.0

#: Diagram names of the engines.
ENGINE_LABEL = {"aurora-postgresql": "Aurora PostgreSQL", "rds-postgresql": "RDS PostgreSQL",
                "external": "PostgreSQL (external)"}


class Postgres(ResourceKind):
    kind = "postgres"
    model = PostgresResource
    local_backing = frozenset({"postgres"})
    credential_url = True
    plan_secret = True
    vpc_port = 5432
    writes_to_primary = True
    product = "PostgreSQL"
    consumer_verb = "write (primary in {primary})"
    database = True
    cdk_provision = "stackwright.resources.postgres:provision_cdk"
    cdk_grant = "stackwright.resources.postgres:grant_cdk"
    cdk_every_region = True

    async def provision_local(self, name: str, res: PostgresResource, ctx: LocalContext) -> str:
        # asyncpg and the migration runner are only needed by `stackwright up`.
        from ..local.runner import ensure_database
        from ..runtime.db import apply_migrations, database_url

        admin = ctx.backing["postgres"]["url"]
        if res.per_tenant:  # tenants' databases are created by the service at run time
            return admin
        await ensure_database(admin, res.database)
        url = database_url(admin, res.database)
        if res.migrations:
            files = sorted((ctx.system.base_dir / res.migrations).glob("*.sql"))
            applied = await apply_migrations(url, [(f.name, f.read_text()) for f in files])
            if applied:
                ctx.report(f"  {name}: applied {', '.join(applied)}")
        return url

    def check(self, system: Any, name: str, res: PostgresResource, fail: Fail) -> None:
        # Folders are checked only for a spec loaded from a file (relative to it).
        if res.migrations and system.source is not None and not (system.base_dir / res.migrations).is_dir():
            raise fail(f"resource '{name}': migrations folder {res.migrations} does not exist",
                       ("resources", name, "migrations"))
        if res.tenants is None:
            return
        if not res.per_tenant:
            raise fail(f"resource '{name}': tenants applies to a per-tenant database", ("resources", name, "tenants"),
                       "set per_tenant: true")
        for service in res.tenants.admin_only:
            if service not in system.services or name not in system.services[service].uses:
                users = [s for s, svc in system.services.items() if name in svc.uses]
                raise fail(f"resource '{name}': tenants.admin_only names '{service}', which is not a service using it",
                           ("resources", name, "tenants", "admin_only"), did_you_mean(service, users, listed="users"))
        if res.tenants.migrations and system.source is not None \
                and not (system.base_dir / res.tenants.migrations).is_dir():
            raise fail(f"resource '{name}': tenant migrations folder {res.tenants.migrations} does not exist",
                       ("resources", name, "tenants", "migrations"))

    def env(self, name: str, res: PostgresResource, *, real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        if res.tenants is None:
            return {resource_env(name, "POOL_MIN"): str(res.pool.min),
                    resource_env(name, "POOL_MAX"): str(res.pool.max)}
        # The tenant pools are what the runtime's TenantDatabases sizes from POOL_MIN / POOL_MAX.
        env = {resource_env(name, "POOL_MIN"): str(res.tenants.pool.min),
               resource_env(name, "POOL_MAX"): str(res.tenants.pool.max),
               resource_env(name, "TENANTS_MAX"): str(res.tenants.max)}
        if res.tenants.connection_budget:
            env[resource_env(name, "CONNECTION_BUDGET")] = str(res.tenants.connection_budget)
        return env

    def regional(self, res: PostgresResource) -> bool:
        return res.engine != "external" and res.cross_region_replicas

    def secret_props(self, name: str, res: PostgresResource, *, primary_region: bool) -> dict[str, str]:
        # Secondary regions read from their local replica and write through ``url``.
        return {} if primary_region else {"READ_URL": "read_url"}

    def sequence_label(self, name: str, res: PostgresResource, *, detailed: bool) -> str:
        return f"{ENGINE_LABEL.get(res.engine, 'PostgreSQL') if detailed else 'PostgreSQL'} {name}"

    def cost(self, name: str, res: PostgresResource, ctx: CostContext) -> None:
        out, is_primary, hours = ctx.out, ctx.is_primary, ctx.hours
        if res.engine == "external":
            if is_primary:
                ctx.assumptions.append(f"database {name} is external: not priced here")
            return
        aurora = res.engine == "aurora-postgresql"
        group = "aurora" if aurora else "rds"
        if is_primary:
            count = res.instances * (2 if (not aurora and res.multi_az) else 1)
            label = (f"Aurora {name}: writer + {res.instances - 1} reader(s) x {res.instance_class}" if aurora else
                     f"RDS {name}: {res.instances} x {res.instance_class}{' Multi-AZ (x2)' if res.multi_az else ''}")
        elif res.cross_region_replicas:
            count = max(1, res.instances - 1)
            label = f"{'Aurora' if aurora else 'RDS'} {name}: {count} cross-region replica(s) x {res.instance_class}"
        else:
            return
        out.add("database", label, f"{group}.{res.instance_class}", count * hours, "instance-hours", discount="rds")
        storage_key = "aurora_usage.storage_gb_month" if aurora else "rds_usage.storage_gb_month"
        copies = 2 if (not aurora and res.multi_az and is_primary) else 1
        out.add("database", f"{name} storage: {res.storage_gb} GB" + (" x2 (Multi-AZ)" if copies == 2 else ""),
                storage_key, res.storage_gb * copies, "GB-month")
        if aurora and res.monthly_io_millions:
            key = "aurora_usage.io_million" if is_primary else "aurora_usage.replicated_write_io_million"
            out.add("database", f"{name} I/O" if is_primary else f"{name} replicated write I/O", key,
                    res.monthly_io_millions, "million I/Os")
        if is_primary:
            out.add("database", f"{name} backup storage beyond the free allowance", f"{group}_usage.backup_gb_month",
                    0, "GB-month", assumption=f"{res.backup_retention_days}-day retention assumed within the free "
                                              "allowance (backup up to the database size is free)")

    def shared_node(self, name: str, res: PostgresResource) -> tuple[str, str, str] | None:
        return ("ExtDB_", f"External PostgreSQL {name}", "db") if res.engine == "external" else None

    def region_node(self, name: str, res: PostgresResource, *, region: str,
                    primary: str) -> tuple[str, str, str] | None:
        if res.engine == "external":
            return None  # drawn once, in "Shared services"
        if region == primary:
            label = f"{ENGINE_LABEL[res.engine]} {name}<br/>Primary {res.instance_class}" + (
                "<br/>Multi-AZ" if res.multi_az else "")
        elif res.cross_region_replicas:
            label = f"{ENGINE_LABEL[res.engine]} {name}<br/>Read replica {res.instance_class}"
        else:
            return None
        return "data", label, "db"

    def diagram_links(self, system: Any, service: str, name: str, res: PostgresResource, *, region: str,
                      primary: str, workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        from ..plan.roles import access

        writes = access(system, service) == "write"
        if res.engine == "external":
            return [f"{workload} -->|{'reads + writes' if writes else 'reads'}| {shared}"]
        if region == primary:
            if writes:
                return [f"{workload} -->|reads + writes| {prim}"]
            via = "reader endpoint" if res.instances > 1 else "primary: no readers"
            return [f"{workload} -->|reads, {via}| {prim}"]
        if res.cross_region_replicas:
            return [f"{workload} -->|reads| {local}"] + ([f"{workload} -.->|writes| {prim}"] if writes else [])
        return [f"{workload} -.->|{'reads + writes' if writes else 'reads'}| {prim}"]

    def region_links(self, name: str, res: PostgresResource, *, region: str, primary: str, local: str,
                     prim: str) -> list[str]:
        if res.cross_region_replicas and region != primary and res.engine != "external":
            return [f"{prim} -.->|async replication| {local}"]
        return []

    def spofs(self, name: str, res: PostgresResource) -> list[tuple[str, str, str, str]]:
        if res.engine == "external":
            return []
        if res.instances == 1 and (res.engine == "aurora-postgresql" or not res.multi_az):
            return [("high", f"database {name} has one instance: no failover target",
                     f"resources.{name}.instances", "use 2 instances (writer + reader in another AZ)")]
        if res.engine == "aurora-postgresql" and not res.multi_az:
            return [("medium", f"database {name} keeps its instances in one AZ", f"resources.{name}.multi_az",
                     "set multi_az: true")]
        return []

    def recovery(self, system: Any, name: str, res: PostgresResource, *, detect_s: float) -> Any:
        from ..plan.model import StoreRecovery

        multi = len(system.regions) > 1
        if res.engine == "external":
            return StoreRecovery(name, "postgres", "external", "outside this spec", "not analysed", None, None, None,
                                 "not analysed", "not analysed")
        aurora = res.engine == "aurora-postgresql"
        if aurora:
            repl = "Aurora shared storage (6 copies over 3 AZs)" + (
                f" + {res.instances - 1} reader(s)" if res.instances > 1 else "")
            rto = AURORA_FAILOVER if res.instances > 1 else AURORA_RECREATE
            failover = ("promote a reader" if res.instances > 1 else "create a new writer")
            rpo, rpo_text = 0.0, "0 (storage is shared)"
        elif res.multi_az:
            repl, rto, failover = "synchronous Multi-AZ standby", RDS_MULTI_AZ, "fail over to the standby"
            rpo, rpo_text = 0.0, "0 (synchronous standby)"
        else:
            repl, rto, failover = "none (single instance)", RDS_RESTORE, "point-in-time restore"
            rpo, rpo_text = RDS_PITR_LOSS_S, f"up to {RDS_PITR_LOSS_S:g} s (transaction log upload interval)"
        if multi and res.cross_region_replicas:
            kind = "Aurora Global Database" if aurora else "cross-region read replica"
            promo = CROSS_REGION_PROMOTION
            detect = detect_s
            region_loss = (f"{kind}: promote a secondary after detection ({detect:.0f} s) + promotion "
                           f"({promo[0]:.0f}-{promo[1]:.0f} s) = {detect + promo[0]:.0f}-{detect + promo[1]:.0f} s; "
                           f"~{CROSS_REGION_LAG_S:g} s of writes lost (replication lag)")
            return StoreRecovery(name, "postgres", res.engine, repl + f"; async {kind} to the secondaries",
                                 failover, rto[0], rto[1], rpo, rpo_text, region_loss,
                                 (detect + promo[0], detect + promo[1]), CROSS_REGION_LAG_S)
        if multi:
            region_loss = ("no copy outside the primary region: writes stop until it returns or a snapshot is "
                           "restored elsewhere (hours)")
        else:
            region_loss = "single region: restore from backup elsewhere (hours)"
        return StoreRecovery(name, "postgres", res.engine, repl, failover, rto[0], rto[1], rpo, rpo_text, region_loss)

    def recovery_findings(self, system: Any, name: str, res: PostgresResource, store: Any) -> list[Any]:
        from ..plan.model import Finding

        st, findings = store, []
        if res.engine == "external":
            return [Finding("low", "failure", f"database {st.store} is external: its RTO/RPO are not "
                            "analysed here", f"resources.{st.store}.engine",
                            "document its recovery (backups, failover) next to the spec")]
        if st.rto_s_typical is None or st.rto_s_worst is None:
            return []
        rto_s, rpo_s = system.slo.rto_minutes * 60, system.slo.rpo_seconds
        slo_text = f"slo.rto_minutes ({system.slo.rto_minutes:g} min)"
        checks = [("in-region failover", (st.rto_s_typical, st.rto_s_worst), st.rpo_s)]
        if st.region_rto_s is not None:
            checks.append(("region loss", st.region_rto_s, st.region_rpo_s))
        for what, (typical, worst), rpo in checks:
            if typical > rto_s:
                findings.append(Finding("high", "failure", f"database {st.store}: {what} takes ~{typical:.0f} s, "
                                        f"over {slo_text}", f"resources.{st.store}",
                                        "add a reader in another AZ / a cross-region replica"))
            elif worst > rto_s:
                findings.append(Finding("medium", "failure", f"database {st.store}: {what} can take up to "
                                        f"{worst:.0f} s (typical {typical:.0f} s), over {slo_text}",
                                        f"resources.{st.store}", "automate the promotion and rehearse it"))
            if rpo is not None and rpo > rpo_s:
                findings.append(Finding("high", "failure", f"database {st.store}: {what} can lose {rpo:g} s of "
                                        f"writes, over slo.rpo_seconds ({rpo_s:g} s)", f"resources.{st.store}",
                                        "use shared-storage or synchronous replication"))
        if len(system.regions) > 1 and st.region_rto_s is None:
            findings.append(Finding("high", "failure", f"database {st.store} has no copy outside "
                                    f"{system.primary_region.name}: losing that region stops writes for hours",
                                    f"resources.{st.store}.cross_region_replicas", "set cross_region_replicas"))
        return findings

    def failure_scenarios(self, system: Any, name: str, res: PostgresResource, *, detect_s: float) -> list[Any]:
        from ..plan.model import FailureScenario

        if res.engine == "external":
            return []
        st = self.recovery(system, name, res, detect_s=detect_s)
        return [FailureScenario(f"the {name} primary fails", "writes fail; reads from readers continue",
                                "RDS event + connection errors (seconds)",
                                f"{st.failover}: {st.rto_s_typical:.0f}-{st.rto_s_worst:.0f} s"
                                if res.instances > 1 or res.multi_az else st.failover, st.rpo_text)]

    def az_loss(self, name: str, res: PostgresResource) -> tuple[str, str]:
        if res.engine == "external":
            return "", f"external database {name}: not analysed here"
        label = f"{ENGINE_LABEL[res.engine]} {name}"
        if res.engine == "aurora-postgresql":
            # The CDK app gives a multi_az Aurora cluster a reader in another AZ even at instances: 1.
            if res.instances > 1 or res.multi_az:
                return (f"{label}: if its writer was there, a reader in another AZ is promoted "
                        f"({AURORA_FAILOVER[0]:g}-{AURORA_FAILOVER[1]:g} s)", f"none for {name} (shared storage)")
            return (f"{label}: if its one instance was there, a new writer is created "
                    f"({AURORA_RECREATE[0]:g}-{AURORA_RECREATE[1]:g} s)", f"none for {name} (shared storage)")
        if res.multi_az:
            return (f"{label}: if its primary was there, it fails over to the standby "
                    f"({RDS_MULTI_AZ[0]:g}-{RDS_MULTI_AZ[1]:g} s)", f"none for {name} (synchronous standby)")
        return (f"{label} (single-AZ): if it was there, it is down until restored "
                f"({RDS_RESTORE[0]:g}-{RDS_RESTORE[1]:g} s)", f"up to {RDS_PITR_LOSS_S:g} s of writes to {name}")

    def replicates_across_regions(self, res: PostgresResource) -> bool:
        return res.cross_region_replicas

    def legend_row(self, system: Any, name: str, res: PostgresResource, *, regions: list[str],
                   primary: str) -> tuple[str, dict[str, str]]:
        cell = {}
        for r in regions:
            if res.engine == "external":
                cell[r] = "external (not managed here)" if r == primary else f"external, in {primary}"
            elif r == primary:
                readers = res.instances - 1
                cell[r] = (f"Primary ({res.instance_class})" + (f" + {readers} reader" + "s" * (readers > 1)
                                                                 if readers else "")
                           + (", Multi-AZ" if res.multi_az else ", single-AZ"))
            elif res.cross_region_replicas:
                cell[r] = f"Read Replica ({res.instance_class}) x{max(1, res.instances - 1)}"
            else:
                cell[r] = f"none: reads and writes go to {primary}"
        return f"{ENGINE_LABEL[res.engine]} ({name})", cell

    def priced_instances(self, res: PostgresResource) -> list[tuple[str, str, str, str]]:
        if res.engine == "external":
            return []
        group = "aurora" if res.engine == "aurora-postgresql" else "rds"
        return [(group, res.instance_class, "instance_class", f"{res.engine} instance class")]

    def image_migrations(self, res: PostgresResource) -> str | None:
        return res.migrations

    def migrated_at_deploy(self, res: PostgresResource) -> bool:
        # Per-tenant databases get their schema when a tenant is created, not at deploy.
        return bool(res.migrations) and not res.per_tenant

    def eks_secret(self, system: Any, environment: str, name: str, res: PostgresResource,
                   service: str) -> tuple[str, str]:
        from ..deploy import names as naming

        if res.engine == "external":
            return naming.external_url_secret_name(system, environment, name), "url"
        return naming.db_user_secret_name(system, environment, name, service), "url"

    def backup_retention_days(self, res: PostgresResource) -> int:
        return res.backup_retention_days

    def region_loss_step(self, res: PostgresResource) -> str | None:
        # Any cross_region_replicas database names the step, also an external one (as plan always did).
        return "promote a secondary database (Aurora Global Database managed failover)" \
            if res.cross_region_replicas else None

    def sequence_request(self, system: Any, service: str, name: str, res: PostgresResource, *,
                         primary: str) -> str:
        from ..plan.roles import access

        if access(system, service) == "write":
            return f"SQL (writes go to the primary in {primary})"
        return f"SQL reads ({_read_target(res)})"


def _read_target(res: PostgresResource) -> str:
    """Where a read-only service's queries go: readers in its region when the spec has them."""
    if res.engine == "external":
        return "the external database"
    replicas = "cross-region replicas in secondary regions" if res.cross_region_replicas else ""
    local = "the reader endpoint in the primary region" if res.instances > 1 else "the primary"
    return f"{local}, {replicas}" if replicas else local


def provision_cdk(stack: Any, name: str, res: PostgresResource) -> None:
    """The database (writer or replica) and, per service using it, the login secret with ``url``
    (writes: the primary, or the local Aurora secondary that forwards them) and ``read_url``."""
    from ..deploy import names as naming
    from ..render.aws.constructs.database import Database
    from ..render.aws.constructs.secrets import dynamic_reference, secret, value_secret

    plan, system, env, keys = stack.plan, stack.plan.system, stack.plan.environment, stack.keys
    region = stack.region_spec.name
    primary = plan.is_primary(region)
    if res.engine == "external":
        if primary:
            value_secret(stack, f"ExternalUrl-{name}", name=naming.external_url_secret_name(system, env, name),
                         key=keys.data, description=f"URL of the external database {name}: set url by hand",
                         fields={"url": ""}, replica_regions=stack.replica_regions or None)
        return
    if plan.hosts(name, region):
        stack.databases[name] = Database(
            stack, f"Db-{name}", spec=res, role="primary" if primary else "replica",
            identifier=naming.db_cluster_identifier(system, env, name),
            global_identifier=naming.global_db_identifier(system, env, name),
            primary_region=plan.primary.name, network=stack.network, keys=keys,
            clients=stack.cluster.security_group, log_retention_days=system.monitoring.log_retention_days,
            admin_secret_name=naming.db_admin_secret_name(system, env, name),
            replica_regions=stack.replica_regions)
    home = stack.primary_stack.databases[name]
    here = stack.databases.get(name)
    writer = here.writer_endpoint if here is not None and (primary or here.cluster is not None) \
        else home.writer_endpoint
    reader = (here or home).reader_endpoint
    for service in stack.users_of(name):
        password_name = naming.db_password_secret_name(system, env, name, service)
        password = None
        if primary:
            password = secret(stack, f"DbPassword-{name}-{service}", name=password_name, key=keys.data,
                              description=f"Password of service {service} on database {name}",
                              replica_regions=stack.replica_regions or None)
        user = service.replace("-", "_")
        pw = dynamic_reference(password_name, "password")
        login = value_secret(
            stack, f"DbLogin-{name}-{service}", name=naming.db_user_secret_name(system, env, name, service),
            key=keys.data, description=f"Login of service {service} to database {name} in {region}",
            fields={
                "username": user, "password": pw, "dbname": res.database, "port": "5432",
                "host": writer, "read_host": reader,
                "url": f"postgresql://{user}:{pw}@{writer}:5432/{res.database}?sslmode=require",
                "read_url": f"postgresql://{user}:{pw}@{reader}:5432/{res.database}?sslmode=require",
            })
        if password is not None:
            login.node.add_dependency(password)


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: PostgresResource, secrets: list[str]) -> None:
    """IAM database authentication as the service's own user, its login secret, and for a per-tenant
    database the tenants' secrets it creates."""
    from aws_cdk import aws_iam as iam

    from ..deploy import names as naming

    plan, system, env = stack.plan, stack.plan.system, stack.plan.environment
    region = stack.region_spec.name
    if res.engine == "external":
        secrets.append(naming.external_url_secret_name(system, env, name))
        return
    secrets.append(naming.db_user_secret_name(system, env, name, service))
    db_user = service.replace("-", "_")
    if plan.hosts(name, region):
        stack.databases[name].grant_connect(role, db_user)
    else:
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["rds-db:connect"],
            resources=[stack.arn("rds-db", plan.primary.name, f"dbuser:*/{db_user}")]))
    if res.per_tenant:
        tenants = naming.tenant_secret_prefix(system, env, name)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                     "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                     "secretsmanager:TagResource"],
            resources=[stack.arn("secretsmanager", region, f"secret:{tenants}*")]))


KIND: ResourceKind = Postgres()
