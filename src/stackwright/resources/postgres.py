"""PostgreSQL: embedded (pgserver) locally, Aurora or RDS PostgreSQL in AWS, or an external server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind


class Pool(Strict):
    min: int = Field(2, ge=0)
    max: int = Field(20, ge=1)


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

    def env(self, name: str, res: PostgresResource, *, real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        return {resource_env(name, "POOL_MIN"): str(res.pool.min), resource_env(name, "POOL_MAX"): str(res.pool.max)}

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
