"""Tenancy.refresh: one registry query re-confirms every cached tenant, so a tenant asked for less often than
the cache lasts costs no query per request, and a suspension still shows within the cache's lifetime."""

from __future__ import annotations

import asyncio

import pytest

from stackwright.runtime.db import TenantDatabases
from stackwright.runtime.problems import Problem
from stackwright.runtime.tenancy import Tenancy


async def test_refresh_keeps_active_tenants_cached_and_drops_the_others() -> None:
    registry = {"t_a": "active", "t_b": "active"}
    asked: list[object] = []

    async def status_of(tenant: str) -> str | None:
        asked.append(tenant)
        return registry.get(tenant)

    async def statuses_of(tenants: list[str]) -> dict[str, str]:
        asked.append(tuple(tenants))
        return {t: registry[t] for t in tenants if t in registry}

    tenancy = Tenancy(TenantDatabases("postgresql://unused/none"), status_of, statuses_of=statuses_of,
                      cache_ttl_s=0.2)
    await tenancy.require_active("t_a")
    await tenancy.require_active("t_b")
    assert asked == ["t_a", "t_b"]
    registry["t_b"] = "suspended"
    await asyncio.sleep(0.15)
    await tenancy.refresh()  # one query for both
    assert asked[2:] == [("t_a", "t_b")]
    await asyncio.sleep(0.1)  # past the first confirmation's lifetime, within the refresh's
    await tenancy.require_active("t_a")
    assert len(asked) == 3  # served from the cache
    with pytest.raises(Problem) as refused:
        await tenancy.require_active("t_b")
    assert refused.value.status == 409 and asked[-1] == "t_b"
