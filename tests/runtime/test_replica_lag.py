"""A service's read pool on a replica exports the replica's lag (stackwright_replication_lag_seconds): the series
the ReplicationLagHigh rule fires on, from the services themselves, so it exists on EKS as locally."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from stackwright.local.backing.postgres import LocalPostgres
from stackwright.runtime import Service, Settings

pytestmark = pytest.mark.integration

SERIES = 'stackwright_replication_lag_seconds{region="eu-west-1",resource="db",system="lagged"}'


def _service(url: str, read_url: str | None) -> Service:
    env = {"SERVICE_NAME": "reader", "SYSTEM_NAME": "lagged", "REGION": "eu-west-1", "DB_URL": url,
           "DEPENDENCY_CHECK_INTERVAL_S": "0.2"}
    if read_url:
        env["DB_READ_URL"] = read_url
    svc = Service(settings=Settings.from_env(env))
    svc.postgres("db", reads=True)
    return svc


async def _metrics(svc: Service) -> str:
    async with (svc.app.router.lifespan_context(svc.app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://svc") as c):
        for _ in range(100):  # the first dependency check runs within half a second of start-up
            text = (await c.get("/metrics")).text
            if SERIES in text:
                return text
            await asyncio.sleep(0.1)
        return text


async def test_a_read_pool_on_a_replica_exports_its_lag(postgres_server: LocalPostgres) -> None:
    # The server is a primary: a "replica" URL pointing at it is 0 s behind.
    text = await _metrics(_service(postgres_server.url, postgres_server.url))
    line = next(ln for ln in text.splitlines() if ln.startswith(SERIES))
    assert float(line.split()[-1]) == 0.0


async def test_on_aurora_the_lag_is_the_instance_visibility_lag(fresh_db: str) -> None:
    """Aurora has no WAL replay on its readers: the lag comes from aurora_global_db_instance_status(). The two
    Aurora functions are stood in for here (same names and columns as the Aurora User Guide documents) on a real
    Postgres, as moto stands in for AWS APIs."""
    import asyncpg

    from stackwright.runtime.db import Database

    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute("""
            CREATE FUNCTION aurora_db_instance_identifier() RETURNS varchar LANGUAGE sql
              AS $$ SELECT 'reader-eu-1'::varchar $$;
            CREATE FUNCTION aurora_global_db_instance_status()
              RETURNS TABLE (server_id varchar, session_id varchar, aws_region varchar,
                             visibility_lag_in_msec bigint) LANGUAGE sql
              AS $$ VALUES ('writer-us-1'::varchar, 'MASTER_SESSION_ID'::varchar, 'us-east-1'::varchar, NULL::bigint),
                           ('reader-eu-1', 'a1b2', 'eu-west-1', 1500::bigint) $$;
        """)
    finally:
        await conn.close()
    db = Database(fresh_db, min_size=1, max_size=1)
    try:
        assert await db.replica_lag() == 1.5
    finally:
        await db.close()
