"""The audit chain's export to the write-once archive (the ``audit-archive`` bucket with Object Lock; a local
folder store that refuses overwrites and deletes here): segments by size and by age, a crash between the
export and its record re-exports the same bytes to the same key, and ``GET /audit/verify`` finds a database
row edited by someone who also rewrote every later hash (the database chain alone then verifies)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from stackwright.runtime.storage import LocalStore, ObjectLocked, store_from_url

from .conftest import Payments

pytestmark = pytest.mark.integration


def _verify(payments: Payments, tenant: str) -> dict[str, Any]:
    resp = payments.client.get("/audit/verify", headers=payments.token(tenant))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _link(prev: str, tenant: str, seq: int, event_id: str, kind: str, body: Any) -> str:
    """The chain's rule (audit's ``entry_hash``), as a tamperer who knows it would recompute it."""
    canonical = json.dumps({"tenant_id": tenant, "seq": seq, "event_id": event_id, "kind": kind, "body": body},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + canonical).encode()).hexdigest()


def test_the_chain_is_archived_write_once_and_a_rewritten_database_is_caught(payments: Payments) -> None:
    tenant = payments.new_tenant("archive")
    src, dst = payments.account(tenant, 10_000), payments.account(tenant)
    for _ in range(6):
        assert payments.pay(tenant, src, dst, 10).json()["status"] == "settled"
    # tenant.created + 6 payments = 7 entries, in segments of at most 5 (the size limit); a tail waits at most ~1 s
    # (the age limit), so how the 7 split depends on the pace of the requests.
    verdict = payments.wait_until(lambda: (v := _verify(payments, tenant))["archive"]["last_seq"] == 7 and v, 30)
    assert verdict["ok"] and verdict["entries"] == 7 and verdict["broken_at"] is None
    archived = verdict["archive"]
    assert (archived["entries"], archived["mismatch_at"], archived["reason"]) == (7, None, None)

    store = store_from_url(payments.archive_url)
    assert isinstance(store, LocalStore) and store.retention is not None and store.retention.mode == "COMPLIANCE"
    keys = asyncio.run(store.list(f"audit/{tenant}/"))
    assert len(keys) == archived["segments"] >= 2
    segments = [[json.loads(x) for x in asyncio.run(store.get(k)).decode().splitlines()] for k in keys]
    rows = payments.sql(payments.platform_url, "SELECT seq, hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
                        tenant)
    prev, seq = "0" * 64, 1
    for key, (header, *entries) in zip(keys, segments, strict=True):
        head = header["segment"]
        # Named by its range, contiguous, at most 5 entries, carrying the previous segment's last hash.
        assert key == f"audit/{tenant}/{head['first_seq']:012d}-{head['last_seq']:012d}.jsonl"
        assert head["first_seq"] == seq and head["prev_hash"] == prev and 1 <= head["entries"] <= 5
        assert [e["seq"] for e in entries] == list(range(seq, head["last_seq"] + 1))
        assert [e["hash"] for e in entries] == [r["hash"] for r in rows[seq - 1:head["last_seq"]]]
        prev, seq = head["last_hash"], head["last_seq"] + 1
    assert seq == 8

    # The archive refuses to change a segment (the local store's Object Lock; S3's on AWS).
    for change in (store.put(keys[0], b"{}"), store.delete(keys[0])):
        with pytest.raises(ObjectLocked):
            asyncio.run(change)

    # A crash between writing the object and recording it: the record is gone, the object stays. The exporter
    # rebuilds the same range, which is the same bytes under the same key (put_once: nothing written).
    last = segments[-1][0]["segment"]["first_seq"]
    before = (store.root / keys[-1]).stat().st_mtime_ns, asyncio.run(store.get(keys[-1]))
    recorded = payments.sql(payments.platform_url, "DELETE FROM audit_exports WHERE tenant_id = $1 AND first_seq = $2 "
                            "RETURNING key, sha256", tenant, last)
    assert [r["key"] for r in recorded] == [keys[-1]]
    again = payments.wait_until(lambda: payments.sql(
        payments.platform_url, "SELECT key, sha256 FROM audit_exports WHERE tenant_id = $1 AND first_seq = $2",
        tenant, last), 30)
    assert [tuple(r) for r in again] == [tuple(r) for r in recorded]
    assert ((store.root / keys[-1]).stat().st_mtime_ns, asyncio.run(store.get(keys[-1]))) == before
    assert asyncio.run(store.list(f"audit/{tenant}/")) == keys

    # Someone able to switch the trigger off edits entry 3 and rewrites every later hash: the database chain
    # verifies on its own, the locked copy does not agree.
    payments.sql(payments.platform_url, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
    try:
        entries = payments.sql(payments.platform_url, "SELECT * FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
                               tenant)
        prev = entries[1]["hash"]
        for row in entries[2:]:
            body = json.loads(row["body"])
            if row["seq"] == 3:
                body["amount"] = 1
            new = _link(prev, tenant, row["seq"], row["event_id"], row["kind"], body)
            payments.sql(payments.platform_url, "UPDATE audit_log SET body = $3, prev_hash = $4, hash = $5 "
                         "WHERE tenant_id = $1 AND seq = $2", tenant, row["seq"], json.dumps(body), prev, new)
            prev = new
    finally:
        payments.sql(payments.platform_url, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
    tampered = _verify(payments, tenant)
    assert tampered["broken_at"] is None and tampered["entries"] == 7  # the rewritten database chain holds...
    assert tampered["ok"] is False and tampered["archive"]["mismatch_at"] == 3  # ...against itself only
    assert "differs from the locked copy" in tampered["archive"]["reason"]
