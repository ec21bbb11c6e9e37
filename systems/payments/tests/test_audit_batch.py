"""Audit appends payment events in batches (one transaction per tenant and batch, acked after the commit):
kill -9 of audit while a backlog is being appended loses no event, records none twice and leaves the chain
linked in order."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from stackwright.local.chaos import process_pid
from stackwright.resources.topic import Topic as TopicKind
from stackwright.runtime.queue.base import encode_body

from .conftest import Payments

pytestmark = pytest.mark.integration

#: Events published at once: three of audit's batches (100 each), so the kill lands while a backlog remains.
EVENTS = 300


def _recorded(payments: Payments, tenant: str) -> int:
    return int(payments.sql(payments.platform_url, "SELECT count(*) AS n FROM audit_log WHERE tenant_id = $1",
                            tenant)[0]["n"])


def test_kill_9_mid_batch_keeps_every_event_once_and_the_chain_valid(payments: Payments) -> None:
    tenant = payments.new_tenant("batch")
    payments.wait_until(lambda: _recorded(payments, tenant) == 1, 30)  # tenant.created
    stream = TopicKind().local_name(payments.system, "payment-events")
    ids = [f"payment:{uuid.uuid4()}:settled" for _ in range(EVENTS)]

    async def publish() -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(payments.fresh_state()["resources"]["payment-events"])
        try:
            # As payment publishes them (Topic.publish's entry), all in one pipeline so that the backlog is there
            # at once; no payer email, so notification sends nothing.
            async with client.pipeline(transaction=False) as pipe:
                for k, i in enumerate(ids):
                    pipe.xadd(stream, {"b": encode_body({"id": i, "type": "payment.settled", "tenant_id": tenant,
                                                         "payment_id": i.split(":")[1], "amount": k + 1,
                                                         "currency": "USD", "status": "settled"})})
                await pipe.execute()
        finally:
            await client.aclose()

    asyncio.run(publish())
    state = payments.fresh_state()
    pid = process_pid(state, "audit")
    assert pid
    os.kill(pid, signal.SIGKILL)
    payments.wait_until(lambda: process_pid(payments.fresh_state(), "audit") not in (None, pid), 60)
    payments.wait_until(lambda: _recorded(payments, tenant) >= EVENTS + 1, 90)

    rows = payments.sql(payments.platform_url, "SELECT seq, event_id FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
                        tenant)
    assert [r["seq"] for r in rows] == list(range(1, EVENTS + 2))
    recorded = [r["event_id"] for r in rows[1:]]
    assert sorted(recorded) == sorted(ids)  # each event once: none lost, none twice
    verdict = payments.client.get("/audit/verify", headers=payments.token(tenant)).json()
    assert verdict["ok"] is True and verdict["entries"] == EVENTS + 1 and verdict["broken_at"] is None, verdict
