"""Multi-tenant request scoping: the caller's tenant comes from a verified token claim, never from the
path or body, and its requests reach only its own database.

    tenancy = Tenancy(svc.tenant_databases("db"), status_of=lookup_status)
    db = await tenancy.database(tenancy.tenant_of(principal))   # 403 / 404 / 409 as problem+json

``status_of(tenant)`` (async) answers the tenant's lifecycle status from the system's registry:
``"active"``, another status (``"provisioning"``, ``"suspended"``, ...: 409) or None (unknown: 404). An
active verdict is cached for ``cache_ttl_s`` so a busy tenant costs no registry query per request; a
subscriber that consumes the system's tenant-created event calls :meth:`mark_active` to warm it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

from .auth import Principal
from .db import Database, TenantDatabases
from .problems import Problem

#: What a tenant id may look like (it names a database and a role, so it is kept to a safe identifier).
TENANT_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Tenancy:
    """Resolve the verified caller to its tenant's (opened) database."""

    def __init__(self, dbs: TenantDatabases, status_of: Callable[[str], Awaitable[str | None]], *,
                 claim: str = "tenant_id", cache_ttl_s: float = 5.0) -> None:
        self.dbs = dbs
        self.status_of = status_of
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

    async def database(self, tenant: str) -> Database:
        """The tenant's pool, reopened if it was evicted; 404/409 as :meth:`require_active`."""
        await self.require_active(tenant)
        return await self.dbs.get(tenant)


async def open_on_created(tenancy: Tenancy, messages: list[object], *, event_type: str = "tenant.created") -> None:
    """A :func:`~stackwright.runtime.consume` handler for a tenant-events subscription: for each
    ``{"type": event_type, "tenant_id": ...}`` event, mark the tenant active and open its pool (``min``
    connections), so its first request finds them warm. Other events are ignored. Idempotent."""
    for message in messages:
        body = getattr(message, "body", {})
        tenant = body.get("tenant_id") if isinstance(body, dict) else None
        if body.get("type") == event_type and isinstance(tenant, str) and TENANT_ID.fullmatch(tenant):
            tenancy.mark_active(tenant)
            await tenancy.dbs.get(tenant)
