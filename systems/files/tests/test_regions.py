"""Files with its DR standby on one machine (``stackwright up --regions``): us-west-2 (standby) runs its own
gateway, Redis and services on a streaming replica of the primary's Postgres. The test runs a private copy of
the spec with the primary and the standby only (the two serving secondaries would double the processes and
test nothing more here): a file uploaded in the primary reaches the standby's replica, the standby's gateway
answers for it, the replica refuses writes and the global entry reports the replication lag."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from tests.helpers import regions_up, sql, wait_until

from stackwright.local.demokit import bearer, idp_for
from stackwright.runtime.db import database_url
from stackwright.spec import load_system

SYSTEM_DIR = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _primary_and_standby(dest: Path) -> Path:
    """A copy of the system whose spec keeps the primary and standby regions only; returns the spec path."""
    shutil.copytree(SYSTEM_DIR, dest, ignore=shutil.ignore_patterns("tests", "__pycache__", "bench*", "*.pyc"))
    spec_path = dest / "system.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["regions"] = [r for r in spec["regions"] if r["role"] in ("primary", "standby")]
    for region in spec["regions"]:
        region.pop("traffic_share", None)  # the primary now serves every client
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    spec = _primary_and_standby(tmp_path_factory.mktemp("system") / "files")
    root = tmp_path_factory.mktemp("files-regions")
    with regions_up(spec, root) as state:
        yield state, bearer(idp_for(load_system(spec), root / "files" / "idp-key.pem").mint("region-user"))


def test_the_standby_region_replicates_and_serves(regions: tuple[dict[str, Any], dict[str, str]]) -> None:
    state, user = regions
    assert {n: r["role"] for n, r in state["regions"].items()} == {"us-east-1": "primary", "us-west-2": "standby"}
    replica = database_url(state["regions"]["us-west-2"]["postgres"], "files")

    resp = httpx.post(f"{state['global_entry']}/files", params={"name": "dr.txt"}, content=b"disaster recovery",
                      headers={**user, "x-region": "us-east-1"}, timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-served-by-region"] == "us-east-1"
    file_id = resp.json()["id"]
    rows = wait_until(lambda: sql(replica, "SELECT name, size FROM files WHERE id = $1::uuid", file_id))
    assert (rows[0]["name"], rows[0]["size"]) == ("dr.txt", len(b"disaster recovery"))

    # The standby's own gateway and services answer for the replicated file.
    got = httpx.get(f"{state['regions']['us-west-2']['gateway']}/files/{file_id}", headers=user, timeout=10)
    assert got.status_code == 200, got.text
    assert got.json()["name"] == "dr.txt"

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        sql(replica, "DELETE FROM files WHERE id = $1::uuid", file_id)

    health = httpx.get(f"{state['global_entry']}/_global/regions", timeout=5).json()["regions"]
    assert {n: h["healthy"] for n, h in health.items()} == {"us-east-1": True, "us-west-2": True}
    metrics = httpx.get(f"{state['global_entry']}/_global/metrics", timeout=10).text
    assert 'stackwright_replication_lag_seconds{system="files",resource="db",region="us-west-2"}' in metrics
