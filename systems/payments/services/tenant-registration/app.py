"""Tenant registration: POST /tenants onboards a tenant for real, resumably.

Steps (each idempotent, the last one done recorded in ``tenants.step`` of the platform database):

1. ``registered``: a row with a generated id, status ``provisioning`` (a retry with the same name finds it);
2. ``role``: a login role ``tenant_<id>`` with a fresh password;
3. ``database``: ``CREATE DATABASE tenant_<id> OWNER tenant_<id>``, ``REVOKE CONNECT ... FROM PUBLIC`` and
   ``GRANT CONNECT`` to that role only (so no other tenant's role can even connect);
4. ``migrated``: the tenant migrations applied as the tenant's role (it owns every table);
5. ``credentials``: ``tenant_<id>_db_url`` / ``_db_user`` / ``_db_password`` written to the secret store;
6. ``published``: ``tenant.created`` published on the tenant-events topic (no credentials in it);
7. status ``active``.

A crash anywhere leaves status ``provisioning``; the next POST with the same name, or this service's
start-up sweep, runs the steps again from the top (every one is safe to repeat: the role's password is
renewed and the secret rewritten together), so onboarding completes, once. One replica provisions a
tenant at a time (a Postgres advisory lock on the tenant id).

Drill knob: ``ONBOARDING_PAUSE_S`` (seconds) sleeps after each step for tenants whose name starts with
``ONBOARDING_PAUSE_PREFIX`` (default ``slow-``), so a test can kill -9 this service mid-onboarding. Unset in
the spec: 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import Depends
from pydantic import BaseModel, Field

from stackwright.runtime import Principal, Problem, Service, apply_migrations, problem_responses
from stackwright.runtime.db import database_url

log = logging.getLogger("tenant-registration")

svc = Service(title="tenant-registration")
platform = svc.postgres("platform")
dbs = svc.tenant_databases("db")  # only for its naming rule: this service opens no tenant pools
store = svc.secret_store("tenant-secrets")
events = svc.topic("tenant-events")
app = svc.app

ADMIN_URL = svc.settings.resource_url("db")
MIGRATIONS = Path(__file__).resolve().parent / "tenant-migrations"
PAUSE_S = float(os.environ.get("ONBOARDING_PAUSE_S", "0") or 0)
PAUSE_PREFIX = os.environ.get("ONBOARDING_PAUSE_PREFIX", "slow-")
STEPS = ("registered", "role", "database", "migrated", "credentials", "published")


class NewTenant(BaseModel):
    name: str = Field(min_length=3, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$",
                      description="unique; lower-case letters, digits and '-'")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[a-z]{2,}$")


def secret_keys(tenant_id: str) -> tuple[str, str, str]:
    """Secret store keys of a tenant's credentials (seed: tenant_{id}_db_url / _user / _password)."""
    return f"tenant_{tenant_id}_db_url", f"tenant_{tenant_id}_db_user", f"tenant_{tenant_id}_db_password"


def _public(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "email": row["email"], "status": row["status"],
            "step": row["step"], "attempts": row["attempts"]}


async def _step(tenant_id: str, name: str, step: str) -> None:
    await platform.pool.execute("UPDATE tenants SET step = $2, updated_at = now() WHERE id = $1", tenant_id, step)
    if PAUSE_S and name.startswith(PAUSE_PREFIX):
        await asyncio.sleep(PAUSE_S)


async def provision(tenant_id: str) -> dict[str, Any]:
    """Run (or resume) the onboarding of a registered tenant; returns its row. Safe to call concurrently."""
    async with platform.pool.acquire() as lock:
        # Session lock, held across the steps: another replica resuming the same tenant waits here.
        await lock.execute("SELECT pg_advisory_lock(hashtext('tenant:' || $1))", tenant_id)
        try:
            row = await lock.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
            if row is None or row["status"] != "provisioning":
                return _public(row) if row else {}
            await lock.execute("UPDATE tenants SET attempts = attempts + 1 WHERE id = $1", tenant_id)
            await _provision_steps(tenant_id, row["name"])
            row = await lock.fetchrow("UPDATE tenants SET status = 'active', updated_at = now() WHERE id = $1 "
                                      "RETURNING *", tenant_id)
            log.info("tenant %s (%s) is active", tenant_id, row["name"])
            return _public(row)
        finally:
            await lock.execute("SELECT pg_advisory_unlock(hashtext('tenant:' || $1))", tenant_id)


async def _provision_steps(tenant_id: str, name: str) -> None:
    db_name = dbs.name_for(tenant_id)  # also the role's name; a safe identifier by construction
    # token_urlsafe is [A-Za-z0-9_-]: safe inside a quoted literal (CREATE ROLE takes no bind parameters).
    password = secrets.token_urlsafe(24)
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", db_name):
            await admin.execute(f"ALTER ROLE \"{db_name}\" WITH LOGIN PASSWORD '{password}'")
        else:
            await admin.execute(f"CREATE ROLE \"{db_name}\" WITH LOGIN PASSWORD '{password}' CONNECTION LIMIT 200")
        await _step(tenant_id, name, "role")
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db_name):
            await admin.execute(f'CREATE DATABASE "{db_name}" OWNER "{db_name}"')
        await admin.execute(f'REVOKE ALL ON DATABASE "{db_name}" FROM PUBLIC')
        await admin.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{db_name}" TO "{db_name}"')
        await _step(tenant_id, name, "database")
    finally:
        await admin.close()
    url = _with_credentials(database_url(ADMIN_URL, db_name), db_name, password)
    files = sorted(MIGRATIONS.glob("*.sql"))
    await apply_migrations(url, [(f.name, f.read_text()) for f in files])
    await _step(tenant_id, name, "migrated")
    url_key, user_key, password_key = secret_keys(tenant_id)
    await store.put({url_key: url, user_key: db_name, password_key: password})
    await _step(tenant_id, name, "credentials")
    # The event id is the tenant's: a resumed onboarding that publishes again is recorded once downstream.
    await events.publish({"id": f"tenant.created:{tenant_id}", "type": "tenant.created", "tenant_id": tenant_id,
                          "name": name, "database": db_name})
    await _step(tenant_id, name, "published")


def _with_credentials(url: str, user: str, password: str) -> str:
    """``url`` connecting as ``user``/``password`` (same host, port and database)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@app.post("/tenants", status_code=201, responses=problem_responses(401, 403, 409))
async def create_tenant(body: NewTenant, who: Principal = Depends(svc.principal("platform-admin"))) -> Any:
    """Register and onboard a tenant (201, status active). The same name again resumes an unfinished
    onboarding, or answers the existing tenant (200); a name taken with another email is 409."""
    tenant_id = "t" + uuid.uuid4().hex[:12]
    row = await platform.pool.fetchrow(
        "INSERT INTO tenants (id, name, email, status) VALUES ($1, $2, $3, 'provisioning') "
        "ON CONFLICT (name) DO NOTHING RETURNING *", tenant_id, body.name, body.email)
    created = row is not None
    if row is None:
        row = await platform.pool.fetchrow("SELECT * FROM tenants WHERE name = $1", body.name)
        if row["email"] != body.email:
            raise Problem(409, "a tenant with this name exists already")
    result = await provision(row["id"]) if row["status"] == "provisioning" else _public(row)
    from fastapi.responses import JSONResponse

    return JSONResponse(result, status_code=201 if created else 200)


_ID = re.compile(r"^t[0-9a-f]{12}$")


async def _row(tenant_id: str) -> Any:
    row = await platform.pool.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id) \
        if _ID.fullmatch(tenant_id) else None
    if row is None:
        raise Problem(404, "no such tenant")
    return row


@app.get("/tenants/{tenant_id}", responses=problem_responses(401, 403, 404))
async def get_tenant(tenant_id: str, who: Principal = Depends(svc.principal("platform-admin"))) -> dict[str, Any]:
    return _public(await _row(tenant_id))


@app.post("/tenants/{tenant_id}/suspend", responses=problem_responses(401, 403, 404, 409))
async def suspend(tenant_id: str, who: Principal = Depends(svc.principal("platform-admin"))) -> dict[str, Any]:
    """Suspend an active tenant: its requests answer 409 from then on (within the services' 5 s cache)."""
    row = await _row(tenant_id)
    if row["status"] != "active":
        raise Problem(409, f"tenant is {row['status']}")
    row = await platform.pool.fetchrow("UPDATE tenants SET status = 'suspended', updated_at = now() WHERE id = $1 "
                                       "RETURNING *", tenant_id)
    return _public(row)


@svc.background
async def resume_unfinished() -> None:
    """At start-up, finish every onboarding a crash left in ``provisioning`` (then stop)."""
    rows = await platform.pool.fetch("SELECT id FROM tenants WHERE status = 'provisioning' ORDER BY created_at")
    for r in rows:
        try:
            await provision(r["id"])
        except Exception:  # the next start-up or POST retries it
            log.exception("resuming tenant %s failed", r["id"])
