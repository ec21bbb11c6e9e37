"""The per-process connection budget of tenant pools (``tenants.connection_budget``), against a real
PostgreSQL: connections are counted as held, idle connections are closed to stay within it (of the tenant
holding the most first, the least recently used of those), and a pool a request holds is never closed under it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from stackwright.runtime.db import TenantDatabases
from stackwright.runtime.problems import Problem

pytestmark = pytest.mark.integration


async def _backends(admin: str, prefix: str) -> dict[str, int]:
    conn = await asyncpg.connect(admin)
    try:
        rows = await conn.fetch("SELECT datname, count(*) AS n FROM pg_stat_activity WHERE datname LIKE $1 "
                                "GROUP BY datname", prefix + "%")
    finally:
        await conn.close()
    return {r["datname"]: r["n"] for r in rows}


def test_budget_closes_idle_connections_of_the_biggest_then_least_recently_used_pool(postgres_server) -> None:
    prefix = f"budget_{id(postgres_server) % 10000}_"

    async def scenario() -> None:
        dbs = TenantDatabases(postgres_server.url, prefix=prefix, min_size=2, max_size=2, budget=4)
        try:
            for tenant in ("a", "b", "c"):
                await dbs.create(tenant)
            for tenant in ("a", "b"):
                async with dbs.lease(tenant) as db:
                    assert await db.pool.fetchval("SELECT 1") == 1
            assert dbs.tenants() == [prefix + "a", prefix + "b"]
            async with dbs.lease("a"):  # a is now the most recently used, so b goes first (both hold 2)
                pass
            async with dbs.lease("c") as c:  # c's 2 warm connections: one of b's, then one of a's (2 > 1)
                assert await c.pool.fetchval("SELECT current_database()") == prefix + "c"
            await asyncio.sleep(0.1)
            held = await _backends(postgres_server.url, prefix)
            assert held == {prefix + "a": 1, prefix + "b": 1, prefix + "c": 2}
            assert dbs.connections() == 4
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
                async with dbs.lease(tenant):
                    pass
            assert len(dbs.tenants()) == 3
        finally:
            await dbs.close()

    asyncio.run(scenario())


def test_a_budget_below_one_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold one tenant pool"):
        TenantDatabases("postgresql://unused/", max_size=5, budget=4)


def test_many_tenants_in_a_small_budget_under_concurrent_requests(postgres_server) -> None:
    """12 tenants, 4 connections: 240 concurrent requests, each holding its tenant's pool while it runs a
    query, all succeed (no "pool is closing" from an eviction under a request), the process never holds
    more than the budget (its own count and Postgres' pg_stat_activity), and the pools it keeps have
    shrunk to their min once idle."""
    prefix = f"crowd_{id(postgres_server) % 10000}_"
    tenants = [f"t{k}" for k in range(12)]
    budget = 4

    async def scenario() -> None:
        dbs = TenantDatabases(postgres_server.url, prefix=prefix, min_size=1, max_size=2, budget=budget,
                              idle_s=0.5, wait_s=30)
        for tenant in tenants:
            await dbs.create(tenant)
        seen = {"held": 0, "backends": 0}
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                seen["held"] = max(seen["held"], dbs.connections())
                seen["backends"] = max(seen["backends"], sum((await _backends(postgres_server.url, prefix)).values()))
                await asyncio.sleep(0.005)

        async def request(k: int) -> str:
            tenant = tenants[(k * 7) % len(tenants)]
            async with dbs.lease(tenant) as db:
                await asyncio.sleep(0.002 * (k % 3))  # other requests evict meanwhile
                return str(await db.pool.fetchval("SELECT current_database() FROM pg_sleep(0.003)"))

        watcher = asyncio.create_task(watch())
        try:
            answers = await asyncio.gather(*(request(k) for k in range(240)), return_exceptions=True)
            errors = [a for a in answers if isinstance(a, BaseException)]
            assert errors == []
            assert answers == [prefix + tenants[(k * 7) % len(tenants)] for k in range(240)]
            assert 0 < dbs.connections() <= budget
            await asyncio.sleep(1.5)  # connections idle longer than idle_s are closed
            assert dbs.connections() == 0 and dbs.tenants() == []
        finally:
            stop.set()
            await watcher
            await dbs.close()
        assert 0 < seen["held"] <= budget
        assert 0 < seen["backends"] <= budget
        assert dbs.connections() == 0

    asyncio.run(scenario())


def test_room_comes_from_idle_connections_and_a_leased_pool_closes_after_its_last_lease(postgres_server) -> None:
    prefix = f"lease_{id(postgres_server) % 10000}_"

    async def scenario() -> None:
        dbs = TenantDatabases(postgres_server.url, prefix=prefix, min_size=1, max_size=1, budget=1, wait_s=0.5)
        try:
            for tenant in ("a", "b"):
                await dbs.create(tenant)
            async with dbs.lease("a") as a:
                async with a.pool.acquire() as conn:
                    # b needs the budget's only connection, which a request of a uses: b waits, then 503.
                    with pytest.raises(Problem) as info:
                        async with dbs.lease("b"):
                            pass
                    assert info.value.status == 503
                    assert await conn.fetchval("SELECT current_database()") == prefix + "a"
                # a's connection is idle now, though a is leased: b's pool closes it to make room ...
                async with dbs.lease("b") as b:
                    assert await b.pool.fetchval("SELECT current_database()") == prefix + "b"
                # ... and a's pool, still open, reconnects (closing b's idle connection in turn).
                assert await a.pool.fetchval("SELECT current_database()") == prefix + "a"
                assert dbs.connections() == 1
                await dbs.forget("a")  # e.g. new credentials: closed once this block ends, not under it
                assert await a.pool.fetchval("SELECT 1") == 1
            await asyncio.sleep(0.1)
            assert dbs.connections() == 0 and dbs.tenants() == []
        finally:
            await dbs.close()

    asyncio.run(scenario())


def test_room_comes_from_the_tenant_with_the_most_connections_not_the_least_recently_used(postgres_server) -> None:
    """After a burst leaves one tenant several connections, a tenant coming back in round robin (the least
    recently used) keeps its only one: the burst's surplus is closed instead, so it reconnects nothing."""
    prefix = f"surplus_{id(postgres_server) % 10000}_"

    async def scenario() -> None:
        dbs = TenantDatabases(postgres_server.url, prefix=prefix, min_size=1, max_size=3, budget=5)
        try:
            for tenant in ("a", "b", "c", "d"):
                await dbs.create(tenant)
            async with dbs.lease("b"):  # b: one connection, and the least recently used from here on
                pass
            async with dbs.lease("a") as a:  # a burst: three connections at once
                burst = [await a.pool.acquire() for _ in range(3)]
                for conn in burst:
                    await a.pool.release(conn)
            async with dbs.lease("c"):
                pass
            assert dbs.connections() == 5
            async with dbs.lease("d") as d:  # the budget is full: room is made
                assert await d.pool.fetchval("SELECT current_database()") == prefix + "d"
            await asyncio.sleep(0.1)
            held = await _backends(postgres_server.url, prefix)
            assert held == {prefix + "a": 2, prefix + "b": 1, prefix + "c": 1, prefix + "d": 1}
        finally:
            await dbs.close()

    asyncio.run(scenario())
