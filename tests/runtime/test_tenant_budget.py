"""The per-process connection budget of tenant pools (``tenants.connection_budget``), against a real
PostgreSQL: the least recently used tenant pool is closed so the connections held stay within it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from stackwright.runtime.db import TenantDatabases

pytestmark = pytest.mark.integration


async def _backends(admin: str, prefix: str) -> dict[str, int]:
    conn = await asyncpg.connect(admin)
    try:
        rows = await conn.fetch("SELECT datname, count(*) AS n FROM pg_stat_activity WHERE datname LIKE $1 "
                                "GROUP BY datname", prefix + "%")
    finally:
        await conn.close()
    return {r["datname"]: r["n"] for r in rows}


def test_budget_closes_the_least_recently_used_pool(postgres_server) -> None:
    prefix = f"budget_{id(postgres_server) % 10000}_"

    async def scenario() -> None:
        dbs = TenantDatabases(postgres_server.url, prefix=prefix, min_size=2, max_size=2, budget=4)
        try:
            for tenant in ("a", "b", "c"):
                await dbs.create(tenant)
            for tenant in ("a", "b"):
                pool = (await dbs.get(tenant)).pool
                assert await pool.fetchval("SELECT 1") == 1
            assert dbs.tenants() == [prefix + "a", prefix + "b"]
            await dbs.get("a")  # a is now the most recently used, so b goes first
            c = await dbs.get("c")
            assert await c.pool.fetchval("SELECT current_database()") == prefix + "c"
            assert sorted(dbs.tenants()) == [prefix + "a", prefix + "c"]
            held = await _backends(postgres_server.url, prefix)
            assert sum(held.values()) <= 4 and prefix + "b" not in held
        finally:
            await dbs.close()

    asyncio.run(scenario())


def test_without_a_budget_every_pool_stays_open(postgres_server) -> None:
    prefix = f"nobudget_{id(postgres_server) % 10000}_"

    async def scenario() -> None:
        dbs = TenantDatabases(postgres_server.url, prefix=prefix, min_size=1, max_size=2)
        try:
            for tenant in ("a", "b", "c"):
                await dbs.create(tenant)
                await dbs.get(tenant)
            assert len(dbs.tenants()) == 3
        finally:
            await dbs.close()

    asyncio.run(scenario())


def test_a_budget_below_one_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold one tenant pool"):
        TenantDatabases("postgresql://unused/", max_size=5, budget=4)
