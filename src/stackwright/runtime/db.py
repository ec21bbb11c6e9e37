"""PostgreSQL pools (asyncpg): one per service, or one per tenant database for multi-tenant systems."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .problems import Problem

_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Database:
    """A lazily opened asyncpg pool with a readiness check.

    ``idle_s``: connections above ``min_size`` idle that many seconds are closed. ``connect``, ``setup``
    and ``reset`` are asyncpg's pool hooks (a replacement of ``asyncpg.connect``; called on each acquire;
    called on each release instead of the default reset), e.g. to count and track connections.
    """

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20, idle_s: float = 300.0,
                 connect: Callable[..., Awaitable[asyncpg.Connection]] | None = None,
                 setup: Callable[[Any], Awaitable[None]] | None = None,
                 reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.idle_s = idle_s
        self._hooks = {"connect": connect, "setup": setup, "reset": reset}
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._lag_sql: str | None = None  # REPLICA_LAG_SQL or AURORA_REPLICA_LAG_SQL, chosen on first use

    async def open(self) -> asyncpg.Pool:
        """Open the pool (idempotent)."""
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url, min_size=self.min_size, max_size=self.max_size, command_timeout=30,
                        max_inactive_connection_lifetime=self.idle_s, **self._hooks)
        return self._pool

    def size(self) -> int:
        """Connections the pool holds now (idle and in use); 0 when it is not open."""
        return 0 if self._pool is None else self._pool.get_size()

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


class _Tenant:
    """One tenant's pool, the requests holding it, its open connections and its idle ones (server pid ->
    connection)."""

    __slots__ = ("db", "idle", "leases", "lock", "open", "retired", "tenant")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.db: Database | None = None
        self.leases = 0
        self.retired = False  # dropped by forget(): closed when its last lease ends
        self.lock = asyncio.Lock()  # one opening at a time for this tenant, none across tenants
        self.idle: dict[int, asyncpg.Connection] = {}  # oldest first
        self.open = 0  # connections of this tenant's pool now open (idle or in use)


class TenantDatabases:
    """One pool per tenant database, opened on first use, within a per-process connection budget.

    Use a tenant's pool only inside ``async with dbs.lease(tenant) as db:``; a leased pool is never closed
    under the block (:meth:`forget` closes it when its last lease ends).

    Sizes, per process: each tenant's pool opens ``min_size`` connections when it is opened (warm for the
    first requests), grows on demand up to ``max_size`` and closes connections idle for ``idle_s`` seconds
    (down to none), so a quiet tenant holds nothing. ``budget`` (``tenants.connection_budget``,
    ``<DB>_CONNECTION_BUDGET``) bounds the connections held over all tenant pools, counted as they are
    opened and closed: a connection that would exceed it first closes an idle connection, of the tenant
    holding the most connections first (:meth:`_close_an_idle_connection`; an idle connection is safe to
    close: the pool opens a new one when it needs one). When every connection is in use it waits for one
    to be released, up to ``wait_s`` seconds, then raises Problem 503 (with ``Retry-After``). Waiting only
    ever depends on connections in use, which requests release, so idle pools of other tenants never hold
    a request up (a request that holds one connection while it acquires a second can still wait on itself,
    as with any bounded pool).

    ``url_for`` (async, tenant id -> URL) connects each pool with the tenant's own credentials (e.g. read
    from a secret store) instead of the admin URL; it is called whenever a pool is (re)opened.

    Session state: a released connection goes back without asyncpg's reset query (an open transaction is
    still rolled back), so code using tenant pools must not leave session state behind (LISTEN, session
    advisory locks, ``SET`` outside a transaction, cursors held open); ``SET LOCAL`` is fine.
    """

    def __init__(self, admin_url: str, *, prefix: str = "tenant_", min_size: int = 2, max_size: int = 20,
                 budget: int | None = None, url_for: Callable[[str], Awaitable[str]] | None = None,
                 idle_s: float = 60.0, wait_s: float = 10.0) -> None:
        if budget is not None and budget < max_size:
            raise ValueError(f"connection budget {budget} cannot hold one tenant pool of {max_size}")
        self.admin_url = admin_url
        self.prefix = prefix
        self.min_size = min_size
        self.max_size = max_size
        self.budget = budget
        self.url_for = url_for
        self.idle_s = idle_s
        self.wait_s = wait_s
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()  # least recently leased first
        self._held = 0  # connections open over every tenant pool (counted by the connect hook)
        self._changed = asyncio.Event()  # set (and replaced) whenever a connection is released or closed
        self._closing: set[asyncio.Task[None]] = set()
        self._closed_for_room: set[int] = set()  # server pids of connections closed by _close_an_idle_connection

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

    @contextlib.asynccontextmanager
    async def lease(self, tenant: str) -> AsyncIterator[Database]:
        """The tenant's (opened) pool, held for the block: it is not closed before the block ends. Raises
        what ``url_for`` or connecting raises (the next lease tries again)."""
        name = self.name_for(tenant)
        entry = self._tenants.get(name)
        if entry is None:
            entry = self._tenants[name] = _Tenant(tenant)
        self._tenants.move_to_end(name)
        entry.leases += 1
        try:
            if entry.db is None:
                async with entry.lock:
                    if entry.db is None:
                        entry.db = await self._open(entry)
            yield entry.db
        finally:
            entry.leases -= 1
            if entry.leases == 0:
                if entry.retired:
                    self._close_later(entry)
                elif entry.db is None and self._tenants.get(name) is entry:
                    del self._tenants[name]  # opening failed: nothing to keep

    async def _open(self, entry: _Tenant) -> Database:
        """Open a tenant's pool and warm ``min_size`` connections (they close again once idle ``idle_s``)."""
        url = await self.url_for(entry.tenant) if self.url_for else database_url(self.admin_url,
                                                                                 self.name_for(entry.tenant))
        # asyncpg's own floor stays 0: a connection closed to make room must not be reopened behind our back.
        db = Database(url, min_size=0, max_size=self.max_size, idle_s=self.idle_s,
                      connect=functools.partial(self._connect, entry), setup=functools.partial(self._in_use, entry),
                      reset=functools.partial(self._released, entry))
        pool = await db.open()
        try:
            async with contextlib.AsyncExitStack() as warm:
                for _ in range(min(self.min_size, self.max_size)):
                    await warm.enter_async_context(pool.acquire())
        except BaseException:
            await pool.close()
            raise
        return db

    async def _connect(self, entry: _Tenant, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg's connect for a tenant pool, within the budget: one unit of it per open connection,
        given back when the connection terminates (closed, idle-expired, lost, or closed for room)."""
        await self._take_slot()
        try:
            conn = await asyncpg.connect(*args, **kwargs)
        except BaseException:
            self._give_slot()
            raise
        pid = conn.get_server_pid()
        entry.open += 1

        def terminated(_: object) -> None:
            entry.open -= 1
            entry.idle.pop(pid, None)
            if pid in self._closed_for_room:
                self._closed_for_room.discard(pid)  # its unit was given back when it was closed
            else:
                self._give_slot()

        conn.add_termination_listener(terminated)
        return conn

    async def _in_use(self, entry: _Tenant, proxy: Any) -> None:
        """Pool ``setup`` hook: the connection handed out is no longer idle (so never closed for room)."""
        entry.idle.pop(proxy.get_server_pid(), None)

    async def _released(self, entry: _Tenant, conn: asyncpg.Connection) -> None:
        """Pool ``reset`` hook: the connection is idle now (closable for room). asyncpg has rolled back a
        transaction left open already; its reset query (unlock advisory locks, close cursors, UNLISTEN,
        RESET ALL) is skipped, a round trip per request saved: tenant connections carry no session state."""
        entry.idle[conn.get_server_pid()] = conn
        self._signal()

    async def _take_slot(self) -> None:
        if self.budget is not None:
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while self._held >= self.budget:
                if self._close_an_idle_connection():
                    continue
                changed = self._changed
                left = deadline - asyncio.get_running_loop().time()
                try:
                    await asyncio.wait_for(changed.wait(), max(left, 0))
                except TimeoutError:
                    raise Problem(503, f"every one of this process' {self.budget} tenant database connections "
                                       "is in use", headers={"Retry-After": "1"}) from None
        self._held += 1

    def _close_an_idle_connection(self) -> bool:
        """Close the oldest idle connection of the tenant with the most open connections that has one (of
        those, the least recently leased); its budget unit is free at once. False when no connection is idle.

        Most connections first, not least recently used first: a burst leaves some tenants with several
        connections, and under round robin over many tenants the least recently used tenant is the next to
        come back, so taking its last connection made every request reopen one (a fork, an authentication
        and cold statement plans per payment, at 100 tenants), which kept the process slower than the load
        long after the burst. A tenant's surplus goes first; a last connection only when none has one."""
        chosen: _Tenant | None = None
        for entry in self._tenants.values():  # least recently leased first: it wins ties
            if entry.idle and (chosen is None or entry.open > chosen.open):
                chosen = entry
        if chosen is None:
            return False
        pid = next(iter(chosen.idle))
        conn = chosen.idle.pop(pid)
        self._closed_for_room.add(pid)  # the termination listener must not give it back twice
        self._held -= 1
        conn.terminate()  # idle: asyncpg's own idle expiry closes such connections this way
        return True

    def _give_slot(self) -> None:
        self._held -= 1
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _close_later(self, entry: _Tenant) -> None:
        """Close an unleased pool in a task, so the caller (and other tenants' requests) need not wait."""
        db, entry.db = entry.db, None
        if db is None:
            return
        task = asyncio.create_task(db.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def tenants(self) -> list[str]:
        """Database names of the tenants whose pools hold connections now."""
        return sorted(name for name, entry in self._tenants.items() if entry.db is not None and entry.db.size())

    def connections(self) -> int:
        """Connections held now over every tenant pool (idle and in use)."""
        return self._held

    async def forget(self, tenant: str) -> None:
        """Drop the tenant's pool (e.g. its credentials changed): closed now, or when its last lease ends;
        the next :meth:`lease` opens a new one."""
        entry = self._tenants.pop(self.name_for(tenant), None)
        if entry is not None:
            entry.retired = True
            if entry.leases == 0:
                self._close_later(entry)

    async def close(self) -> None:
        """Close every pool (at shutdown), waiting for the closes under way."""
        for name in list(self._tenants):
            await self.forget(self._tenants[name].tenant)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


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
