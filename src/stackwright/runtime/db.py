"""PostgreSQL pools (asyncpg): one per service, or one per tenant database for multi-tenant systems."""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Database:
    """A lazily opened asyncpg pool with a readiness check."""

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._lag_sql: str | None = None  # REPLICA_LAG_SQL or AURORA_REPLICA_LAG_SQL, chosen on first use

    async def open(self) -> asyncpg.Pool:
        """Open the pool (idempotent)."""
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url, min_size=self.min_size, max_size=self.max_size, command_timeout=30)
        return self._pool

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database pool is not open yet (the service lifespan opens it)")
        return self._pool

    async def check(self) -> None:
        """Readiness: the database answers a trivial query."""
        pool = await self.open()
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    async def replica_lag(self) -> float | None:
        """Seconds this database (a streaming replica) is behind its primary: 0 on a primary or a replica that
        has replayed all it received while streaming; else the age of the last transaction it replayed (None
        before it replayed any). A replica cut off from its primary keeps ageing, so a partition shows.
        On Aurora (the server has ``aurora_global_db_instance_status()``), this instance's
        ``visibility_lag_in_msec`` instead: see :data:`AURORA_REPLICA_LAG_SQL`."""
        pool = await self.open()
        async with pool.acquire(timeout=2) as conn:
            if self._lag_sql is None:
                aurora = await conn.fetchval(AURORA_PROBE_SQL)
                self._lag_sql = AURORA_REPLICA_LAG_SQL if aurora else REPLICA_LAG_SQL
            lag = await conn.fetchval(self._lag_sql)
        return None if lag is None else float(lag)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


#: A standby's lag in seconds (see :meth:`Database.replica_lag`); pg_stat_wal_receiver says whether it streams.
REPLICA_LAG_SQL = """
SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN 0::float8
  WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
       AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0::float8
  ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
END
"""

#: Aurora PostgreSQL does not replicate by WAL replay on its readers (Aurora Global Database secondaries read the
#: shared storage the primary's changes are shipped to), so ``pg_last_xact_replay_timestamp()`` says nothing
#: there. Aurora exposes, on every instance of a global database, ``aurora_global_db_instance_status()``: one row
#: per instance, ``server_id`` and ``visibility_lag_in_msec`` ("how far this DB instance is lagging behind the
#: writer DB instance, in milliseconds"); ``aurora_db_instance_identifier()`` names the instance this connection
#: is on (Aurora PostgreSQL 13.7/12.11/11.16/10.21 and later). Source: Amazon Aurora User Guide,
#: https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora_global_db_instance_status.html and
#: .../aurora_db_instance_identifier.html. The writer's row has no lag (NULL or negative): 0.
AURORA_REPLICA_LAG_SQL = """
SELECT greatest(coalesce(visibility_lag_in_msec, 0), 0)::float8 / 1000
FROM aurora_global_db_instance_status()
WHERE server_id = aurora_db_instance_identifier()
"""
#: Whether the server is Aurora with the global database functions (chooses the lag query once per pool).
AURORA_PROBE_SQL = "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'aurora_global_db_instance_status')"


def database_url(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


class TenantDatabases:
    """One pool per tenant database, opened on first use (``min``/``max`` per pool from the spec).

    ``budget`` (``tenants.connection_budget``, ``<DB>_CONNECTION_BUDGET``) bounds the connections this
    process holds over all tenant pools: at most ``budget // max_size`` pools stay open, and opening one
    more first closes the least recently used other pool (asyncpg's close waits for its connections to be
    released, so requests in flight finish). Call :meth:`get` per unit of work rather than keeping the
    returned Database, so a closed pool is reopened through here and counted.

    ``url_for`` (async, tenant id -> URL) connects each pool with the tenant's own credentials (e.g. read
    from a secret store) instead of the admin URL; it is called whenever a pool is (re)opened.
    """

    def __init__(self, admin_url: str, *, prefix: str = "tenant_", min_size: int = 2, max_size: int = 20,
                 budget: int | None = None, url_for: Callable[[str], Awaitable[str]] | None = None) -> None:
        if budget is not None and budget < max_size:
            raise ValueError(f"connection budget {budget} cannot hold one tenant pool of {max_size}")
        self.admin_url = admin_url
        self.prefix = prefix
        self.min_size = min_size
        self.max_size = max_size
        self.budget = budget
        self.url_for = url_for
        self._dbs: OrderedDict[str, Database] = OrderedDict()  # least recently used first
        self._lock = asyncio.Lock()

    def name_for(self, tenant: str) -> str:
        """Database name of a tenant; tenant ids are restricted so the name is always a safe identifier."""
        name = self.prefix + tenant.lower().replace("-", "_")
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"tenant id {tenant!r} cannot name a database")
        return name

    async def create(self, tenant: str) -> str:
        """Create the tenant's database if missing; returns its name."""
        name = self.name_for(tenant)
        conn = await asyncpg.connect(self.admin_url)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def get(self, tenant: str) -> Database:
        """The (opened) pool of a tenant's database."""
        name = self.name_for(tenant)
        db = self._dbs.get(name)
        if db is None:
            async with self._lock:
                db = self._dbs.get(name)
                if db is None:
                    url = await self.url_for(tenant) if self.url_for else database_url(self.admin_url, name)
                    await self._make_room()
                    db = Database(url, min_size=self.min_size,
                                  max_size=self.max_size)
                    self._dbs[name] = db
        self._dbs.move_to_end(name)
        await db.open()
        return db

    async def _make_room(self) -> None:
        """Close least recently used pools until one more fits in the budget."""
        if self.budget is None:
            return
        while self._dbs and (len(self._dbs) + 1) * self.max_size > self.budget:
            _, evicted = self._dbs.popitem(last=False)
            await evicted.close()

    def tenants(self) -> list[str]:
        """Database names of the pools open now."""
        return sorted(self._dbs)

    def connections(self) -> int:
        """Connections held now over every open tenant pool (idle and in use)."""
        return sum(db._pool.get_size() for db in self._dbs.values() if db._pool is not None)

    async def forget(self, tenant: str) -> None:
        """Close and drop the tenant's pool (e.g. its credentials changed); the next :meth:`get` reopens it."""
        db = self._dbs.pop(self.name_for(tenant), None)
        if db is not None:
            await db.close()

    async def close(self) -> None:
        for db in self._dbs.values():
            await db.close()
        self._dbs.clear()


async def apply_migrations(url: str, files: list[tuple[str, str]]) -> list[str]:
    """Apply ``(name, sql)`` migrations in order, each once, recorded in ``schema_migrations``.

    Returns the names applied now. An advisory lock keeps concurrent starters from racing.
    """
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(7253)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz"
            " NOT NULL DEFAULT now())")
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in files:
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations(name) VALUES ($1)", name)
            applied.append(name)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock(7253)")
        finally:
            await conn.close()
    return applied
