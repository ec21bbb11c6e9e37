"""Audit service: an append-only, tamper-evident record of every state change, one hash chain per tenant.

It consumes tenant-events and payment-events (its own consumer group on each) and appends each event once
(keyed by the publisher's event id) to ``audit_log`` in the platform database:
``hash = sha256(prev_hash + canonical JSON of {tenant_id, seq, event_id, kind, body})``, with ``prev_hash`` of
the first entry 64 zeros. The table refuses UPDATE and DELETE (a trigger); ``GET /audit/verify`` recomputes
the caller's chain and reports the first entry that does not check out.

Export to write-once storage. The chain is also copied to the ``audit-archive`` bucket (S3 Object Lock on
AWS, a folder that refuses overwrites and deletes locally) in segments: once a tenant has
``AUDIT_SEGMENT_ENTRIES`` (default 1000) entries not exported yet, or its oldest one is
``AUDIT_EXPORT_AFTER_S`` (default 60) seconds old, the next range becomes one JSON Lines object
``audit/<tenant>/<first seq:012d>-<last seq:012d>.jsonl``: a header line ``{"segment": {tenant_id, first_seq,
last_seq, prev_hash, last_hash, entries}}`` (``prev_hash``: the previous segment's last hash), then one line
per entry with its ``prev_hash`` and ``hash``. Only a chain that verifies is exported. The object is
written first (``put_once``), then recorded in ``audit_exports``; after a crash in between, the exporter
rebuilds the same range from the database, which gives the same bytes under the same key (a no-op on the
store; other bytes would be refused by the lock and reported), and records it. ``GET /audit/verify`` then
compares every archived entry with the database: an edited row is found even when its editor rewrote
every later hash so the database chain verifies on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, Query

from stackwright.runtime import Principal, Problem, Service, consume, problem_responses
from stackwright.runtime.storage import ObjectLocked
from stackwright.runtime.tenancy import TENANT_ID

log = logging.getLogger("audit")

svc = Service(title="audit")
app = svc.app
platform = svc.postgres("platform")
tenant_events = svc.topic("tenant-events")
payment_events = svc.topic("payment-events")
archive = svc.store("audit-archive")
GENESIS = "0" * 64
#: A segment is exported when this many entries wait, or when the oldest waiting one is this old (seconds).
SEGMENT_ENTRIES = int(os.environ.get("AUDIT_SEGMENT_ENTRIES", "1000"))
EXPORT_AFTER_S = float(os.environ.get("AUDIT_EXPORT_AFTER_S", "60"))


def entry_hash(prev_hash: str, tenant_id: str, seq: int, event_id: str, kind: str, body: dict[str, Any]) -> str:
    """The chain link of one entry (hex sha256)."""
    canonical = json.dumps({"tenant_id": tenant_id, "seq": seq, "event_id": event_id, "kind": kind, "body": body},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _valid(event: Any) -> bool:
    """Whether ``event`` names a tenant, an event id and a kind (anything else is not recorded)."""
    return (isinstance(event, dict) and isinstance(event.get("tenant_id"), str)
            and TENANT_ID.fullmatch(event["tenant_id"]) is not None and isinstance(event.get("id"), str)
            and isinstance(event.get("type"), str))


#: Under the tenant's chain lock: the event ids of the batch recorded already, and the chain's head.
_HEAD_SQL = """
SELECT (SELECT coalesce(array_agg(event_id), '{}') FROM audit_log WHERE tenant_id = $1 AND event_id = ANY($2::text[]))
         AS seen,
       h.seq, h.hash
FROM (SELECT 1) one LEFT JOIN LATERAL (
  SELECT seq, hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1) h ON true
"""

#: The batch's entries in one statement (arrays in chain order).
_INSERT_SQL = """
INSERT INTO audit_log (tenant_id, seq, event_id, kind, body, prev_hash, hash)
SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[])
"""


async def append_many(events: Sequence[dict[str, Any]]) -> int:
    """Append events to their tenants' chains, in the order given; returns how many were recorded (not
    redeliveries, not events naming no tenant, not a repeat within ``events``).

    Per tenant, one transaction under the tenant's chain lock (one writer per chain across replicas): the
    ids already recorded and the chain's head are read, the new entries are linked in order and inserted
    together. So a crash mid-batch leaves each tenant's chain either with all of that tenant's new entries
    or with none; the batch is acked only after every tenant's commit, and the redelivery records exactly
    the ones missing."""
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if _valid(event):
            by_tenant.setdefault(event["tenant_id"], []).append(event)
    recorded = 0
    for tenant, batch in by_tenant.items():
        async with platform.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit:' || $1))", tenant)
            head = await conn.fetchrow(_HEAD_SQL, tenant, [e["id"] for e in batch])
            seen = set(head["seen"])
            seq, prev = (head["seq"], head["hash"]) if head["seq"] is not None else (0, GENESIS)
            rows: list[tuple[int, str, str, str, str, str]] = []
            for event in batch:
                if event["id"] in seen:
                    continue
                seen.add(event["id"])
                seq += 1
                # The body as JSON will read it back (jsonb normalises), so hash exactly that.
                text = json.dumps(event)
                link = entry_hash(prev, tenant, seq, event["id"], event["type"], json.loads(text))
                rows.append((seq, event["id"], event["type"], text, prev, link))
                prev = link
            if rows:
                await conn.execute(_INSERT_SQL, tenant, *(list(col) for col in zip(*rows, strict=True)))
            recorded += len(rows)
    return recorded


async def _record(messages: list[Any]) -> None:
    await append_many([message.body for message in messages])


#: After a batch smaller than the consumer's batch size, wait this long (seconds) before the next receive,
#: so that under load one transaction per tenant appends many events (see ``consume``'s ``linger_s``).
LINGER_S = float(os.environ.get("AUDIT_LINGER_S", "0.2"))


@svc.background
async def follow_tenant_events() -> None:
    await consume(tenant_events.subscription(), _record, batch_size=50)


@svc.background
async def follow_payment_events() -> None:
    await consume(payment_events.subscription(), _record, batch_size=100, linger_s=LINGER_S)


# -- export to the archive ------------------------------------------------------------------------------

def segment_key(tenant: str, first: int, last: int) -> str:
    """Object key of the segment holding entries ``first`` .. ``last`` of ``tenant``'s chain (zero-padded,
    so keys sort in chain order)."""
    return f"audit/{tenant}/{first:012d}-{last:012d}.jsonl"


def _entry(row: Any) -> dict[str, Any]:
    return {"seq": row["seq"], "event_id": row["event_id"], "kind": row["kind"], "body": json.loads(row["body"]),
            "prev_hash": row["prev_hash"], "hash": row["hash"]}


def segment_bytes(tenant: str, rows: Sequence[Any]) -> bytes:
    """The JSON Lines object of consecutive chain ``rows``: a header, then one entry per line. A function of
    the rows only (no clock), so the same range always gives the same bytes."""
    header = {"segment": {"tenant_id": tenant, "first_seq": rows[0]["seq"], "last_seq": rows[-1]["seq"],
                          "prev_hash": rows[0]["prev_hash"], "last_hash": rows[-1]["hash"], "entries": len(rows)}}
    lines = [header] + [_entry(r) for r in rows]
    return b"".join(json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for x in lines)


def check_links(tenant: str, prev: str, entries: Sequence[dict[str, Any]], first: int) -> int | None:
    """The seq of the first of ``entries`` (each with seq, event_id, kind, body, prev_hash, hash) that does not
    continue the chain from ``prev`` at ``first``, or None when all of them do."""
    for i, e in enumerate(entries):
        if (e["seq"] != first + i or e["prev_hash"] != prev
                or e["hash"] != entry_hash(prev, tenant, e["seq"], e["event_id"], e["kind"], e["body"])):
            return first + i
        prev = e["hash"]
    return None


async def export_segment(tenant: str) -> str | None:
    """Export ``tenant``'s next segment if one is due (or adopt one a crash left unrecorded); returns its key,
    or None when there is nothing to do. Raises :class:`ObjectLocked` when the archive holds other bytes
    under the key (the database no longer matches the locked copy)."""
    async with platform.pool.acquire() as conn, conn.transaction():
        # One exporter per tenant across replicas; a busy tenant is simply skipped this round.
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('audit-export:' || $1))", tenant):
            return None
        done = await conn.fetchrow("SELECT last_seq, last_hash FROM audit_exports WHERE tenant_id = $1 "
                                   "ORDER BY first_seq DESC LIMIT 1", tenant)
        first, prev = (done["last_seq"] + 1, done["last_hash"]) if done else (1, GENESIS)
        # An object whose row a crash kept from being written: the same range again (same bytes, same key).
        orphans = await archive.list(f"audit/{tenant}/{first:012d}-")
        if orphans:
            last = int(orphans[0].rsplit("-", 1)[1].split(".")[0])
        else:
            waiting = await conn.fetchrow(
                "SELECT count(*) AS n, min(recorded_at) < now() - make_interval(secs => $3) AS old "
                "FROM (SELECT recorded_at FROM audit_log WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT $4) w",
                tenant, first, EXPORT_AFTER_S, SEGMENT_ENTRIES)
            if waiting["n"] == 0 or (waiting["n"] < SEGMENT_ENTRIES and not waiting["old"]):
                return None
            last = first + waiting["n"] - 1
        rows = await conn.fetch("SELECT * FROM audit_log WHERE tenant_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
                                tenant, first, last)
        broken = check_links(tenant, prev, [_entry(r) for r in rows], first)
        if broken is not None or len(rows) != last - first + 1:
            # Never lock a broken chain in as the record: verify reports it; export stops for this tenant.
            log.error("audit chain of %s does not verify at %s: not exported", tenant, broken or first)
            return None
        data = segment_bytes(tenant, rows)
        key = segment_key(tenant, first, last)
        await archive.put_once(key, data, "application/x-ndjson")
        await conn.execute("INSERT INTO audit_exports (tenant_id, first_seq, last_seq, key, last_hash, sha256) "
                           "VALUES ($1, $2, $3, $4, $5, $6)", tenant, first, last, key, rows[-1]["hash"],
                           hashlib.sha256(data).hexdigest())
        return key


#: Tenants with a segment due: ``$1`` entries waiting, or the oldest waiting one ``$2`` seconds old (entries
#: are numbered 1, 2, ... and exported in order, so the waiting ones are head - done and the oldest is done + 1).
#: A crash between an export and its record leaves that range waiting, so its tenant stays due and is adopted.
DUE_SQL = """
SELECT t.id AS tenant_id FROM tenants t
CROSS JOIN LATERAL (SELECT max(seq) AS head FROM audit_log a WHERE a.tenant_id = t.id) h
CROSS JOIN LATERAL (SELECT coalesce(max(last_seq), 0) AS done FROM audit_exports e WHERE e.tenant_id = t.id) d
WHERE h.head > d.done
  AND (h.head - d.done >= $1 OR (SELECT recorded_at FROM audit_log o WHERE o.tenant_id = t.id AND o.seq = d.done + 1)
                                 < now() - make_interval(secs => $2))
"""


async def export_due() -> list[str]:
    """One round: export every tenant's due segments (several per tenant if it has a backlog). Returns the
    keys written or adopted."""
    # Per registered tenant, three index lookups (its chain's head, its last export, the age of its first entry
    # not exported), not a scan of the log; only tenants with a segment due are visited, so a round over 100
    # tenants whose tails are young is one query, not a transaction per tenant.
    tenants = await platform.pool.fetch(DUE_SQL, SEGMENT_ENTRIES, EXPORT_AFTER_S)
    keys: list[str] = []
    for row in tenants:
        try:
            while (key := await export_segment(row["tenant_id"])) is not None:
                keys.append(key)
        except ObjectLocked as exc:  # the database disagrees with the locked copy: verify reports where
            log.error("audit export of %s refused: %s", row["tenant_id"], exc)
    return keys


@svc.background
async def export_segments() -> None:
    # Polled at a fraction of the age limit, so a quiet tenant's tail is exported within ~1.25 x that age.
    while True:
        await export_due()
        await asyncio.sleep(max(0.5, min(5.0, EXPORT_AFTER_S / 4)))


async def verify_archive(tenant: str) -> dict[str, Any]:
    """Compare every archived segment of ``tenant`` with the database: ``segments``, ``entries`` and
    ``last_seq`` archived, ``mismatch_at`` (the first seq whose database row differs from, or is missing
    next to, the locked copy, or whose archived entry does not verify) with a ``reason``; None when all agree."""
    out: dict[str, Any] = {"segments": 0, "entries": 0, "last_seq": 0, "mismatch_at": None, "reason": None}
    for key in await archive.list(f"audit/{tenant}/"):
        lines = (await archive.get(key)).decode().splitlines()
        header, entries = json.loads(lines[0])["segment"], [json.loads(x) for x in lines[1:]]
        first = int(header["first_seq"])
        out["segments"] += 1
        out["entries"] += len(entries)
        out["last_seq"] = max(out["last_seq"], int(header["last_seq"]))
        bad = check_links(tenant, header["prev_hash"], entries, first)
        if bad is not None:
            out.update(mismatch_at=bad, reason=f"the archived entry {bad} in {key} does not verify")
            return out
        rows = {r["seq"]: r for r in await platform.pool.fetch(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND seq BETWEEN $2 AND $3", tenant, first,
            int(header["last_seq"]))}
        for e in entries:
            row = rows.get(e["seq"])
            if row is None:
                out.update(mismatch_at=e["seq"], reason=f"entry {e['seq']} is archived in {key} but missing from "
                                                        "the database")
                return out
            if _entry(row) != e:
                out.update(mismatch_at=e["seq"], reason=f"entry {e['seq']} in the database differs from the "
                                                        f"locked copy in {key}")
                return out
    return out


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
    """Recompute the caller's chain and compare it with the locked archive: ``ok`` (both agree) with the entry
    count and head hash, the first broken ``seq`` of the database chain (``broken_at``), and ``archive``:
    segments, entries and last seq archived, and the first seq where database and archive disagree
    (``mismatch_at``, with a ``reason``)."""
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
    copy = await verify_archive(tenant)
    return {"tenant": tenant, "ok": broken is None and copy["mismatch_at"] is None, "entries": count,
            "head": expected_prev, "broken_at": broken, "archive": copy}


@app.get("/audit/events", responses=problem_responses(401, 403, 404))
async def events(tenant: str = Depends(caller_tenant), limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """The caller's newest audit entries, newest first."""
    rows = await platform.pool.fetch("SELECT seq, event_id, kind, hash, recorded_at FROM audit_log "
                                     "WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2", tenant, limit)
    return [{"seq": r["seq"], "event_id": r["event_id"], "kind": r["kind"], "hash": r["hash"],
             "recorded_at": r["recorded_at"].isoformat()} for r in rows]
