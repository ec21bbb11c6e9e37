"""Drills for the payments system (seed 001): its ``drills.py`` plug-in.

Only the region drill's writes so far (``stackwright drill region-failover payments``): tenant onboarding
through the global entry while the primary region (us-east-1) is lost and the warm standby (sa-east-1) takes
over.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from stackwright.local.demokit import bearer, idp_for
from stackwright.local.region_outage import present_ids
from stackwright.spec import System


class RegionLoad:
    """Tenant registrations (``POST /tenants``): the 201 comes once the tenant's row, database, role,
    migrations and secret exist, so it acknowledges writes committed in the platform database. Onboarding
    creates a database per tenant, hence the low rate."""

    RATE = 2.0

    def __init__(self, system: System, key_file: Path) -> None:
        idp = idp_for(system, key_file)
        self.admin = bearer(idp.mint("region-drill", ["platform-admin"], ttl_s=3600))
        self.database = system.resources["platform"].database
        self.run = uuid.uuid4().hex[:6]

    async def setup(self, client: httpx.AsyncClient) -> None:
        """Nothing to prepare: each write is a new tenant."""

    async def write(self, client: httpx.AsyncClient, i: int) -> str | None:
        """Register tenant ``i`` of this run; its id when onboarded (201), None otherwise."""
        name = f"drill-{self.run}-{i}"
        resp = await client.post("/tenants", json={"name": name, "email": f"{name}@drill.example.com"},
                                 headers=self.admin)
        return str(resp.json()["id"]) if resp.status_code == 201 else None

    async def present(self, server_url: str, keys: list[str]) -> set[str]:
        """The tenant ids among ``keys`` in the platform database of the server at ``server_url``."""
        return await present_ids(server_url, self.database, "SELECT id FROM tenants WHERE id = ANY($1::text[])",
                                 keys)
