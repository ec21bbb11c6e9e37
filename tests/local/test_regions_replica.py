"""Streaming replicas between local "regions": real Postgres servers, one per region, on free ports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from stackwright.local.backing.replica import heal, lag, partition, set_synchronous, slot_name
from stackwright.local.region_drill import RegionCluster, wait_caught_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegionCluster]:
    """A primary (us-east-1) streaming to one standby (eu-west-1), asynchronous commit."""
    c = RegionCluster(Path(tmp_path_factory.mktemp("regions")), ["us-east-1", "eu-west-1"])
    asyncio.run(c.start("async"))
    yield c
    c.stop()


async def _query(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_standby_streams_the_primary_writes_and_refuses_its_own(cluster: RegionCluster) -> None:
    primary, standby = cluster.url("us-east-1"), cluster.url("eu-west-1")

    async def run() -> None:
        await _query(primary, "INSERT INTO drill_ledger (id) VALUES (424242)")
        await wait_caught_up(standby, primary)
        assert await _query(standby, "SELECT count(*) FROM drill_ledger WHERE id = 424242") == 1
        assert await _query(standby, "SELECT pg_is_in_recovery()") is True
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await _query(standby, "INSERT INTO drill_ledger (id) VALUES (424243)")
        # The slot named after the region is the one the standby streams through.
        assert await _query(primary, "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                            slot_name("eu-west-1")) is True
        measured = await lag(standby, primary)
        assert measured.streaming and measured.in_recovery
        assert measured.bytes is not None and measured.bytes >= 0

    asyncio.run(run())


def test_lag_grows_while_the_standby_is_cut_off_and_reads_stay_served(cluster: RegionCluster) -> None:
    """A partition between the regions (the standby's WAL receiver stopped, as by a cut link): the standby
    still answers reads, stale, and the lag in bytes says by how much."""
    primary, standby = cluster.url("us-east-1"), cluster.url("eu-west-1")

    async def run() -> None:
        await partition(standby)
        for _ in range(50):
            if not (await lag(standby, primary)).streaming:
                break
            await asyncio.sleep(0.1)
        before = await _query(standby, "SELECT count(*) FROM drill_ledger")
        await _query(primary, "INSERT INTO drill_ledger (id) SELECT g FROM generate_series(500000, 500999) g")
        cut = await lag(standby, primary)
        assert not cut.streaming
        assert cut.bytes is not None and cut.bytes > 0
        assert await _query(standby, "SELECT count(*) FROM drill_ledger") == before  # stale, but served
        # Heal the link: the standby catches up through its slot, nothing skipped.
        await heal(standby, cluster.servers["us-east-1"].pg.port, "eu-west-1")
        await wait_caught_up(standby, primary)
        assert await _query(standby, "SELECT count(*) FROM drill_ledger") == before + 1000

    asyncio.run(run())


def test_synchronous_commit_waits_for_the_standby(cluster: RegionCluster) -> None:
    """With the standby cut off, a synchronous commit is not acknowledged (never acknowledged and then lost);
    asynchronous again, it is."""
    primary, standby = cluster.url("us-east-1"), cluster.url("eu-west-1")

    async def run() -> None:
        await set_synchronous(primary, [slot_name("eu-west-1")])
        await partition(standby)
        for _ in range(50):
            if not (await lag(standby, primary)).streaming:
                break
            await asyncio.sleep(0.1)
        conn = await asyncpg.connect(primary)
        try:
            with pytest.raises(TimeoutError):
                await conn.execute("INSERT INTO drill_ledger (id) VALUES (600001)", timeout=1.5)
        finally:
            conn.terminate()
        await set_synchronous(primary, [])
        await _query(primary, "INSERT INTO drill_ledger (id) VALUES (600002)")
        await heal(standby, cluster.servers["us-east-1"].pg.port, "eu-west-1")
        await wait_caught_up(standby, primary)

    asyncio.run(run())
