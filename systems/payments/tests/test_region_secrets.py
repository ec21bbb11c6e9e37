"""After the primary region is lost, the standby serves a tenant onboarded before the loss: its credentials
(made at run time by the primary's tenant-registration) are read in the standby (one store for every local
region, as Secrets Manager replicas on AWS) and reach the promoted database through the standby's own wiring.

A drill (its own two-region bring-up, a kill and a promotion: about two minutes), so marked ``chaos``: not in
the default test run (``-m "not chaos"``); ``pytest systems/payments/tests/test_region_secrets.py``."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from stackwright.local.demokit import bearer, idp_for
from stackwright.local.ports import free_port
from stackwright.local.regions import LocalRegions
from stackwright.local.runner import LocalSystem, UpOptions
from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"

pytestmark = pytest.mark.chaos


async def _scenario(root: Path) -> dict[str, object]:
    system = load_system(SPEC)
    primary = LocalSystem(system, UpOptions(port=free_port(), state_root=root, echo_logs=False, dashboard=False,
                                            replication=True), report=lambda m: None)
    regions = LocalRegions(primary, report=lambda m: None)
    primary.before_stop.append(regions.stop)
    primary.extra_steps.append(("regions and global entry", regions.start))
    await primary.start()
    try:
        idp = idp_for(system, primary.dir / "idp-key.pem")
        admin = bearer(idp.mint("ops", ["platform-admin"]))
        async with httpx.AsyncClient(timeout=30) as client:
            made = await client.post(f"{primary.endpoints.gateway_url}/tenants",
                                     json={"name": f"before-{uuid.uuid4().hex[:8]}", "email": "ops@ex.com"},
                                     headers=admin)
            assert made.status_code == 201, made.text
            tenant = made.json()["id"]
            regions.kill_region(system.primary_region.name)
            promoted = await regions.promote()
            standby = regions.runs[promoted].endpoints.gateway_url
            token = bearer(idp.mint("alice", [], extra={"tenant_id": tenant}))
            account = await client.post(f"{standby}/accounts", json={"name": "after", "currency": "USD"},
                                        headers=token)
            listed = await client.get(f"{standby}/accounts", headers=token)
        return {"promoted": promoted, "account": account.status_code, "body": account.text,
                "listed": [a["id"] for a in listed.json()] if listed.status_code == 200 else listed.text,
                "id": account.json().get("id") if account.status_code == 201 else None}
    finally:
        await primary.stop()


def test_the_standby_serves_a_tenant_onboarded_before_the_primary_region_was_lost(tmp_path: Path) -> None:
    got = asyncio.run(_scenario(tmp_path))
    assert got["promoted"] == "sa-east-1"
    assert got["account"] == 201, got["body"]
    assert got["listed"] == [got["id"]]
