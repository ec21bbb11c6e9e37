"""Voting in three regions on one machine (``stackwright up --regions``): votes accepted in a secondary region
are written in the primary and streamed to every region's replica; results in a secondary region are read
from its replica; the global entry routes by the client's region and reports each region's health."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.helpers import regions_up, wait_until

from stackwright.local.idp import DevIdP
from stackwright.local.regions import region_status
from stackwright.local.state import read_state
from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    root = tmp_path_factory.mktemp("regions-state")
    with regions_up(SPEC, root) as state:
        yield state, root


async def _votes_in(postgres_url: str, poll_id: str) -> int:
    conn = await asyncpg.connect(postgres_url.rsplit("/", 1)[0] + "/voting")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM votes WHERE poll_id = $1", uuid.UUID(poll_id)))
    finally:
        await conn.close()


def test_votes_from_a_secondary_are_written_in_the_primary_and_read_from_each_replica(
        regions: tuple[dict[str, Any], Path]) -> None:
    state, root = regions
    system = load_system(SPEC)
    assert set(state["regions"]) == {r.name for r in system.regions}
    assert state["regions"]["us-east-1"]["role"] == "primary"
    ident = system.edge.identity
    assert ident is not None
    idp = DevIdP(root / "voting" / "idp-key.pem", issuer=ident.issuer, audience=ident.audience)
    admin = {"authorization": f"Bearer {idp.mint('admin-1', ['admin'])}", "x-region": "us-east-1"}
    with httpx.Client(base_url=state["global_entry"], timeout=10) as client:
        resp = client.post("/polls", json={"title": "Regions", "options": ["A", "B"]}, headers=admin)
        assert resp.status_code == 201, resp.text
        assert resp.headers["x-served-by-region"] == "us-east-1"
        poll = resp.json()["id"]
        assert client.post(f"/polls/{poll}/open", headers=admin).status_code == 200
        for i in range(4):
            vote = client.post(f"/polls/{poll}/votes", json={"option": "A" if i % 2 else "B"},
                               headers={"authorization": f"Bearer {idp.mint(f'viewer-{i}')}", "x-region": "eu-west-1"})
            assert vote.status_code == 202, vote.text
            assert vote.headers["x-served-by-region"] == "eu-west-1"

        # The eu-west-1 worker writes them into the primary; every replica then has them.
        deadline = time.monotonic() + 30
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = {n: asyncio.run(_votes_in(r["postgres"], poll)) for n, r in state["regions"].items()}
            if all(c == 4 for c in counts.values()):
                break
            time.sleep(0.2)
        assert counts == {"us-east-1": 4, "eu-west-1": 4, "ap-southeast-1": 4}

        # ap-southeast-1 took no vote: its Redis has no totals, so its results come from its own replica.
        got = client.get(f"/polls/{poll}/results", headers={"x-region": "ap-southeast-1"})
        assert got.status_code == 200 and got.headers["x-served-by-region"] == "ap-southeast-1"
        assert got.json()["totals"] == {"A": 2, "B": 2} and got.json()["source"] == "database"

        metrics = client.get("/_global/metrics").text
        for region in ("eu-west-1", "ap-southeast-1"):
            assert f'stackwright_replication_lag_bytes{{system="voting",resource="db",region="{region}"}}' in metrics
            assert f'stackwright_replication_lag_seconds{{system="voting",resource="db",region="{region}"}}' in metrics

        # The results service in a secondary region reads its replica and exports the replica's lag: the series
        # the ReplicationLagHigh rule fires on, on EKS as locally (the entry's own gauge exists locally only).
        eu = read_state("voting", Path(state["regions"]["eu-west-1"]["state_dir"]).parent)
        assert eu is not None
        series = 'stackwright_replication_lag_seconds{region="eu-west-1",resource="db",system="voting"}'
        results = f"{eu['services']['results'][0]['platform_url']}/metrics"  # the platform port serves /metrics
        line = wait_until(lambda: next((ln for ln in httpx.get(results).text.splitlines()
                                        if ln.startswith(series)), None))
        assert float(line.split()[-1]) >= 0

        health = client.get("/_global/regions").json()["regions"]
        assert all(h["healthy"] for h in health.values()) and set(health) == set(state["regions"])

    rows = asyncio.run(region_status(state))
    assert rows[0]["region"] == "us-east-1"
    for row in rows[1:]:
        assert row["streaming"] is True and row["lag_bytes"] is not None and row["lag_bytes"] >= 0


def test_a_replica_refuses_writes(regions: tuple[dict[str, Any], Path]) -> None:
    state, _root = regions

    async def write() -> None:
        conn = await asyncpg.connect(state["regions"]["eu-west-1"]["postgres"].rsplit("/", 1)[0] + "/voting")
        try:
            await conn.execute("DELETE FROM votes")
        finally:
            await conn.close()

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        asyncio.run(write())
