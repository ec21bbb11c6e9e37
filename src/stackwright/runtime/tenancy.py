"""Multi-tenant request scoping: the caller's tenant comes from a verified token claim, never from the
path or body, and its requests reach only its own database.

    tenancy = Tenancy(svc.tenant_databases("db"), status_of=lookup_status)
    async with tenancy.database(tenancy.tenant_of(principal)) as db:   # 403 / 404 / 409 as problem+json
        ...   # the pool stays open for the block

``status_of(tenant)`` (async) answers the tenant's lifecycle status from the system's registry:
``"active"``, another status (``"provisioning"``, ``"suspended"``, ...: 409) or None (unknown: 404). An
active verdict is cached for ``cache_ttl_s`` so a busy tenant costs no registry query per request; a
subscriber that consumes the system's tenant-created event calls :meth:`mark_active` to warm it. With
``statuses_of`` (many tenants in one query), :meth:`refresh` re-confirms every cached tenant at once, so a
tenant asked for less often than every ``cache_ttl_s`` (100 tenants in round robin) costs no query either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .auth import Principal
from .db import Database, TenantDatabases
from .problems import Problem

log = logging.getLogger("stackwright.runtime")

#: What a tenant id may look like (it names a database and a role, so it is kept to a safe identifier).
TENANT_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Tenancy:
    """Resolve the verified caller to its tenant's (opened) database."""

    def __init__(self, dbs: TenantDatabases, status_of: Callable[[str], Awaitable[str | None]], *,
                 claim: str = "tenant_id", cache_ttl_s: float = 5.0,
                 statuses_of: Callable[[list[str]], Awaitable[dict[str, str]]] | None = None) -> None:
        self.dbs = dbs
        self.status_of = status_of
        self.statuses_of = statuses_of
        self.claim = claim
        self.cache_ttl_s = cache_ttl_s
        self._active: dict[str, float] = {}  # tenant -> monotonic time its active status was confirmed

    def tenant_of(self, who: Principal) -> str:
        """The tenant id of a verified caller; Problem 403 when the token carries none (or a malformed one)."""
        tenant = who.claims.get(self.claim)
        if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
            raise Problem(403, f"the token carries no valid {self.claim} claim")
        return tenant

    def mark_active(self, tenant: str) -> None:
        """Record that ``tenant`` is active (from a tenant-created event)."""
        self._active[tenant] = time.monotonic()

    async def refresh(self) -> None:
        """Re-confirm every cached tenant in one ``statuses_of`` query: the active ones stay cached for another
        ``cache_ttl_s`` (counted from before the query), the others are dropped (their next request asks the
        registry and gets its 404/409). Run every ``cache_ttl_s / 2``, it keeps the bound on how long a
        suspension takes to show while no request waits on the registry."""
        tenants = list(self._active)
        if not tenants or self.statuses_of is None:
            return
        asked = time.monotonic()
        statuses = await self.statuses_of(tenants)
        for tenant in tenants:
            if statuses.get(tenant) == "active":
                if tenant in self._active:  # not dropped meanwhile
                    self._active[tenant] = max(self._active[tenant], asked)
            else:
                self._active.pop(tenant, None)

    def forget(self, tenant: str) -> None:
        """Drop the cached status (e.g. the tenant was suspended)."""
        self._active.pop(tenant, None)

    async def require_active(self, tenant: str) -> None:
        """Problem 404 for an unknown tenant, 409 for one that is not active (provisioning, suspended)."""
        seen = self._active.get(tenant)
        if seen is not None and time.monotonic() - seen < self.cache_ttl_s:
            return
        status = await self.status_of(tenant)
        if status is None:
            self._active.pop(tenant, None)
            raise Problem(404, "unknown tenant")
        if status != "active":
            self._active.pop(tenant, None)
            raise Problem(409, f"tenant is {status}", tenant_status=status)
        self._active[tenant] = time.monotonic()

    @contextlib.asynccontextmanager
    async def database(self, tenant: str) -> AsyncIterator[Database]:
        """The tenant's pool, reopened if it was evicted and leased for the block (see
        :meth:`TenantDatabases.lease`); 404/409 as :meth:`require_active`."""
        await self.require_active(tenant)
        async with self.dbs.lease(tenant) as db:
            yield db


async def open_on_created(tenancy: Tenancy, messages: list[object], *, event_type: str = "tenant.created") -> None:
    """A :func:`~stackwright.runtime.consume` handler for a tenant-events subscription: for each
    ``{"type": event_type, "tenant_id": ...}`` event, mark the tenant active and open its pool (``min``
    connections), so its first request finds them warm. Other events are ignored. Idempotent."""
    for message in messages:
        body = getattr(message, "body", {})
        tenant = body.get("tenant_id") if isinstance(body, dict) else None
        if body.get("type") == event_type and isinstance(tenant, str) and TENANT_ID.fullmatch(tenant):
            tenancy.mark_active(tenant)
            async with tenancy.dbs.lease(tenant):
                pass


#: Registry query of :func:`tenant_scope`: the tenant's lifecycle status from a ``tenants(id, status)`` table.
STATUS_QUERY = "SELECT status FROM tenants WHERE id = $1"
#: The same for many tenants at once (:meth:`Tenancy.refresh`): rows of (id, status).
STATUSES_QUERY = "SELECT id, status FROM tenants WHERE id = ANY($1::text[])"


def relocate(url: str, server: str) -> str:
    """The tenant's ``url`` (its role, password and database) at the host, port and options of ``server``,
    this service's own wiring of the tenants' server. The stored URL names the server its writer saw, which
    after a region failover is gone: a standby region reaches the promoted writer through its own wiring."""
    from urllib.parse import urlsplit, urlunsplit

    own, at = urlsplit(url), urlsplit(server)
    userinfo = own.netloc.rpartition("@")[0]
    host = at.netloc.rpartition("@")[2]
    return urlunsplit((own.scheme, f"{userinfo}@{host}" if userinfo else host, own.path, at.query or own.query, ""))


def tenant_scope(svc: Any, *, registry: str, secrets: str, events: str, databases: str,
                 url_key: str = "tenant_{tenant}_db_url", status_query: str = STATUS_QUERY,
                 statuses_query: str = STATUSES_QUERY,
                 ) -> tuple[Tenancy, Callable[..., Awaitable[tuple[str, Database]]]]:
    """Wire a service of a database-per-tenant system, the same way in every service that serves tenants.

    * ``registry``: the Postgres resource holding ``tenants(id, status)`` (``status_query`` reads it);
    * ``secrets``: the secret store holding each tenant's own connection URL under ``url_key`` (its role
      can connect to its own database only; the admin URL is never used for tenant requests);
    * ``events``: the topic whose ``tenant.created`` events this service consumes in its own group
      (a background task marks the tenant active and opens its pool); another re-confirms the cached
      tenants' statuses in one ``statuses_query`` every half ``cache_ttl_s`` (:meth:`Tenancy.refresh`);
    * ``databases``: the per-tenant Postgres resource (pools bounded by its connection budget).

    Returns the :class:`Tenancy` and a FastAPI dependency giving ``(tenant id, its Database)`` for the
    verified caller (403/404/409 problem+json as :meth:`Tenancy.database`), leased until the request is
    answered.
    """
    from fastapi import Depends

    from .worker import consume

    platform = svc.postgres(registry)
    store = svc.secret_store(secrets)
    topic = svc.topic(events)
    dbs = svc.tenant_databases(databases)

    server = svc.settings.resource_url(databases)

    async def url_for(tenant: str) -> str:
        url = await store.get(url_key.format(tenant=tenant))
        if url is None:
            raise Problem(409, "tenant credentials are not provisioned yet", tenant_status="provisioning")
        return relocate(str(url), server)

    async def status_of(tenant: str) -> str | None:
        return await platform.pool.fetchval(status_query, tenant)

    async def statuses_of(tenants: list[str]) -> dict[str, str]:
        return {r[0]: r[1] for r in await platform.pool.fetch(statuses_query, tenants)}

    dbs.url_for = url_for
    tenancy = Tenancy(dbs, status_of, statuses_of=statuses_of)

    @svc.background
    async def follow_tenants() -> None:
        await consume(topic.subscription(), lambda batch: open_on_created(tenancy, batch), batch_size=10)

    @svc.background
    async def refresh_statuses() -> None:
        while True:
            await asyncio.sleep(tenancy.cache_ttl_s / 2)
            try:
                await tenancy.refresh()
            except Exception as exc:  # the registry is away: requests ask it themselves once the cache ages
                log.warning("refreshing tenant statuses failed: %s", exc)

    async def tenant_db(who: Principal = Depends(svc.principal())  # noqa: B008
                        ) -> AsyncIterator[tuple[str, Database]]:
        # A yield dependency: the request holds its tenant's pool until it is answered.
        tenant = tenancy.tenant_of(who)
        async with tenancy.database(tenant) as db:
            yield tenant, db

    return tenancy, tenant_db
