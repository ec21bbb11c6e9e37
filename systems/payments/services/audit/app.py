"""Audit service: an append-only, tamper-evident record of every state change, one hash chain per tenant.

It consumes tenant-events and payment-events (its own consumer group on each) and appends each event once
(keyed by the publisher's event id) to ``audit_log`` in the platform database:
``hash = sha256(prev_hash + canonical JSON of {tenant_id, seq, event_id, kind, body})``, with ``prev_hash`` of
the first entry 64 zeros. The table refuses UPDATE and DELETE (a trigger); ``GET /audit/verify`` recomputes
the caller's chain and reports the first entry that does not check out. On AWS the chain would also be
exported to an S3 bucket with Object Lock (not rendered yet: see the README).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Depends, Query

from stackwright.runtime import Principal, Problem, Service, consume, problem_responses
from stackwright.runtime.tenancy import TENANT_ID

svc = Service(title="audit")
app = svc.app
platform = svc.postgres("platform")
tenant_events = svc.topic("tenant-events")
payment_events = svc.topic("payment-events")
GENESIS = "0" * 64


def entry_hash(prev_hash: str, tenant_id: str, seq: int, event_id: str, kind: str, body: dict[str, Any]) -> str:
    """The chain link of one entry (hex sha256)."""
    canonical = json.dumps({"tenant_id": tenant_id, "seq": seq, "event_id": event_id, "kind": kind, "body": body},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


async def append(event: dict[str, Any]) -> bool:
    """Append one event to its tenant's chain; False when it was recorded already (a redelivery) or names
    no tenant."""
    tenant, event_id, kind = event.get("tenant_id"), event.get("id"), event.get("type")
    if not (isinstance(tenant, str) and TENANT_ID.fullmatch(tenant) and isinstance(event_id, str)
            and isinstance(kind, str)):
        return False
    async with platform.pool.acquire() as conn, conn.transaction():
        # One writer per tenant chain at a time, across replicas.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit:' || $1))", tenant)
        if await conn.fetchval("SELECT 1 FROM audit_log WHERE tenant_id = $1 AND event_id = $2", tenant, event_id):
            return False
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
                                   tenant)
        seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, GENESIS)
        # The body as JSON will read it back (jsonb normalises), so hash exactly that.
        body = json.loads(json.dumps(event))
        await conn.execute(
            "INSERT INTO audit_log (tenant_id, seq, event_id, kind, body, prev_hash, hash) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)", tenant, seq, event_id, kind, json.dumps(body), prev,
            entry_hash(prev, tenant, seq, event_id, kind, body))
    return True


async def _record(messages: list[Any]) -> None:
    for message in messages:
        await append(message.body)


@svc.background
async def follow_tenant_events() -> None:
    await consume(tenant_events.subscription(), _record, batch_size=50)


@svc.background
async def follow_payment_events() -> None:
    await consume(payment_events.subscription(), _record, batch_size=100)


async def caller_tenant(who: Principal = Depends(svc.principal())) -> str:
    """The tenant of the verified token; 404 for an unknown tenant."""
    tenant = who.claims.get("tenant_id")
    if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
        raise Problem(403, "the token carries no valid tenant_id claim")
    if await platform.pool.fetchval("SELECT status FROM tenants WHERE id = $1", tenant) is None:
        raise Problem(404, "unknown tenant")
    return tenant


@app.get("/audit/verify", responses=problem_responses(401, 403, 404))
async def verify(tenant: str = Depends(caller_tenant)) -> dict[str, Any]:
    """Recompute the caller's chain: ``ok`` with the entry count and head hash, or the first broken ``seq``."""
    expected_prev, count, broken = GENESIS, 0, None
    async with platform.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor("SELECT * FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant):
            count += 1
            good = (row["seq"] == count and row["prev_hash"] == expected_prev and row["hash"] == entry_hash(
                row["prev_hash"], tenant, row["seq"], row["event_id"], row["kind"], json.loads(row["body"])))
            if not good:
                broken = row["seq"]
                break
            expected_prev = row["hash"]
    return {"tenant": tenant, "ok": broken is None, "entries": count, "head": expected_prev, "broken_at": broken}


@app.get("/audit/events", responses=problem_responses(401, 403, 404))
async def events(tenant: str = Depends(caller_tenant), limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """The caller's newest audit entries, newest first."""
    rows = await platform.pool.fetch("SELECT seq, event_id, kind, hash, recorded_at FROM audit_log "
                                     "WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2", tenant, limit)
    return [{"seq": r["seq"], "event_id": r["event_id"], "kind": r["kind"], "hash": r["hash"],
             "recorded_at": r["recorded_at"].isoformat()} for r in rows]
