"""Payments in two regions on one machine (``stackwright up --regions``): the warm standby sa-east-1 runs its
own gateway, Redis and services on a streaming replica of the primary's Postgres. Tenants onboarded in the
primary reach the standby's replica; the standby's services write through the writer endpoint into the
primary; the replica refuses writes; the global entry reports both regions and the replication lag."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.helpers import regions_up, sql, wait_until

from stackwright.local.demokit import bearer, idp_for
from stackwright.runtime.db import database_url
from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    root = tmp_path_factory.mktemp("payments-regions")
    with regions_up(SPEC, root) as state:
        idp = idp_for(load_system(SPEC), root / "payments" / "idp-key.pem")
        yield state, bearer(idp.mint("ops", ["platform-admin"]))


def _onboard(base: str, admin: dict[str, str], **headers: str) -> httpx.Response:
    name = f"r-{uuid.uuid4().hex[:8]}"
    return httpx.post(f"{base}/tenants", json={"name": name, "email": "ops@ex.com"}, headers={**admin, **headers},
                      timeout=30)


def test_the_standby_region_replicates_and_writes_through_the_primary(
        regions: tuple[dict[str, Any], dict[str, str]]) -> None:
    state, admin = regions
    assert {n: r["role"] for n, r in state["regions"].items()} == {"us-east-1": "primary", "sa-east-1": "standby"}
    primary = database_url(state["regions"]["us-east-1"]["postgres"], "platform")
    replica = database_url(state["regions"]["sa-east-1"]["postgres"], "platform")

    # Onboarded through the global entry (the primary serves it); the row streams to the standby's replica.
    resp = _onboard(state["global_entry"], admin)
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-served-by-region"] == "us-east-1"
    tenant = resp.json()["id"]
    rows = wait_until(lambda: sql(replica, "SELECT status FROM tenants WHERE id = $1", tenant))
    assert rows[0]["status"] == "active"

    # A standby takes no traffic while the primary is healthy, whatever region the client asks for.
    got = httpx.get(f"{state['global_entry']}/tenants/{tenant}", headers={**admin, "x-region": "sa-east-1"},
                    timeout=10)
    assert got.status_code == 200 and got.headers["x-served-by-region"] == "us-east-1"

    # The standby's own services write into the primary (through the writer endpoint), not into the replica.
    standby = state["regions"]["sa-east-1"]["gateway"]
    resp = _onboard(standby, admin)
    assert resp.status_code == 201, resp.text
    assert sql(primary, "SELECT 1 FROM tenants WHERE id = $1", resp.json()["id"])

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        sql(replica, "DELETE FROM tenants WHERE id = $1", tenant)

    health = httpx.get(f"{state['global_entry']}/_global/regions", timeout=5).json()["regions"]
    assert {n: h["healthy"] for n, h in health.items()} == {"us-east-1": True, "sa-east-1": True}
    metrics = httpx.get(f"{state['global_entry']}/_global/metrics", timeout=10).text
    for resource in ("platform", "db"):
        assert (f'stackwright_replication_lag_bytes{{system="payments",resource="{resource}",region="sa-east-1"}}'
                in metrics)


def test_the_standby_reads_the_credentials_of_a_tenant_onboarded_in_the_primary(
        regions: tuple[dict[str, Any], dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tenant credentials are made at run time by the primary's tenant-registration; the standby's services
    must read them (on AWS from the secret's replica in sa-east-1; locally from the store every region shares)
    and reach the tenant's database through their own wiring (the writer endpoint, which follows a promotion)."""
    state, admin = regions
    resp = _onboard(state["global_entry"], admin)
    assert resp.status_code == 201 and resp.headers["x-served-by-region"] == "us-east-1", resp.text
    tenant = resp.json()["id"]
    primary_dir = Path(state["regions"]["sa-east-1"]["state_dir"]).parents[2]
    assert (primary_dir / "secrets" / "tenant-secrets.json").exists()
    # The standby provisions no store of its own: there is one copy of the credentials.
    assert not (Path(state["regions"]["sa-east-1"]["state_dir"]) / "secrets" / "tenant-secrets.json").exists()

    idp = idp_for(load_system(SPEC), primary_dir / "idp-key.pem")
    token = bearer(idp.mint("alice", [], extra={"tenant_id": tenant}))
    standby = state["regions"]["sa-east-1"]["gateway"]
    made = httpx.post(f"{standby}/accounts", json={"name": "acct", "currency": "USD"}, headers=token, timeout=30)
    assert made.status_code == 201, made.text
    listed = httpx.get(f"{standby}/accounts", headers=token, timeout=30)
    assert listed.status_code == 200 and [a["id"] for a in listed.json()] == [made.json()["id"]]
