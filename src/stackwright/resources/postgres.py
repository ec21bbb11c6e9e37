"""PostgreSQL: embedded (pgserver) locally, Aurora or RDS PostgreSQL in AWS, or an external server.

Per-tenant databases. ``per_tenant: true`` gives every tenant its own database on the server, created
by the service at run time (``Service.tenant_databases``), each with its own connection pool. ``tenants``
sizes that: ``max`` tenants at most, ``pool`` per tenant (defaults min 2 / max 20, seed 001's figures),
``migrations`` the folder of .sql files for each new tenant database, and ``connection_budget`` the most
connections one process may hold over all its tenants' pools. The folder is validated here; the service
applies it with ``stackwright.runtime.db.apply_migrations`` after ``create`` (the runtime does not read
it by itself yet). Services get ``<DB>_POOL_MIN`` / ``<DB>_POOL_MAX`` from ``tenants.pool``,
``<DB>_TENANTS_MAX`` and, when set, ``<DB>_CONNECTION_BUDGET``; the runtime keeps at most
``connection_budget // pool.max`` tenant pools open, closing the least recently used one first.

Plan: a process of a per-tenant database's user opens up to :func:`connections_per_process`
(``tenants.max x pool.max``, bounded by the budget); the connection check multiplies that by its pods
and flags a HIGH finding when the total exceeds the instance's ``max_connections`` and no budget bounds it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..spec.strict import Strict
from .base import CostContext, Fail, LocalContext, ResourceKind


def connections_per_process(res: PostgresResource) -> int:
    """Connections one process of a service using ``res`` may open: ``pool.max``, or for a per-tenant
    database with ``tenants`` every tenant's pool (``tenants.max x tenants.pool.max``) bounded by
    ``tenants.connection_budget``."""
    if res.tenants is None:
        return res.pool.max
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
    pool: Pool = Field(default_factory=Pool, description="connection pool of each tenant's database, per process")
    connection_budget: int | None = Field(
        None, ge=1, description="most connections one process holds over all its tenant pools (the runtime closes "
                                "the least recently used tenant pool to stay within it); unset: tenants.max x pool.max")

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
        if res.tenants is None:
            return
        if not res.per_tenant:
            raise fail(f"resource '{name}': tenants applies to a per-tenant database", ("resources", name, "tenants"),
                       "set per_tenant: true")
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


KIND: ResourceKind = Postgres()
