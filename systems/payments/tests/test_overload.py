"""Overload: a payment holds no tenant database connection (nor an open transaction) while fraud and the
ledger are asked, so slow remote calls or a backlog cannot pin a process' connection budget (issue 12: at 100
tenants over capacity, payments holding their connections across the calls exhausted the budget, and every
other tenant's request then paid a reconnect: the system never recovered from one overload step)."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from stackwright.local.chaos import process_pid
from stackwright.runtime.db import database_url

#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any
#: Payments in flight while fraud does not answer: fewer than the breaker's 5 consecutive failures, so it
#: stays closed for the tests after this one.
IN_FLIGHT = 4


def test_no_connection_is_held_across_a_stalled_fraud_call(payments: Payments) -> None:
    tenant = payments.new_tenant("stall")
    src, dst = payments.account(tenant, 10_000), payments.account(tenant)
    assert payments.pay(tenant, src, dst, 10).json()["status"] == "settled"  # fraud answers: breaker count 0
    tenant_db = database_url(payments.admin_url, f"tenant_{tenant}")
    pid = process_pid(payments.fresh_state(), "fraud")
    assert pid
    busy: list[int] = []  # per sample: this tenant's connections idle inside an open transaction
    stop = threading.Event()

    def idle_in_transaction() -> int:
        return int(payments.sql(tenant_db, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND state = 'idle in transaction'")[0][0])

    def pending() -> int:
        return int(payments.sql(tenant_db, "SELECT count(*) FROM payments WHERE status = 'pending'")[0][0])

    def sample() -> None:
        while not stop.is_set():
            busy.append(idle_in_transaction())

    os.kill(pid, signal.SIGSTOP)  # fraud neither answers nor is restarted: each call waits out its timeout
    sampler = threading.Thread(target=sample)
    try:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            calls = [pool.submit(payments.pay, tenant, src, dst, 20 + k) for k in range(IN_FLIGHT)]
            # Sample once every payment waits on fraud: claimed (its pending row committed) or, as before this
            # fix, inside the transaction its claim opened.
            payments.wait_until(lambda: pending() + idle_in_transaction() >= IN_FLIGHT, 30)
            sampler.start()
            answers = [c.result() for c in calls]
    finally:
        stop.set()
        os.kill(pid, signal.SIGCONT)
        if sampler.is_alive():
            sampler.join()
    assert [a.status_code for a in answers] == [201] * IN_FLIGHT
    assert {a.json()["status"] for a in answers} == {"held"}
    assert {tuple(a.json()["reasons"]) for a in answers} == {("fraud_unavailable",)}
    assert busy and max(busy) == 0, busy  # no transaction stayed open across the fraud call
    httpx.get(payments.state["gateway"] + "/fraud/rules", headers=payments.token(tenant), timeout=10)
    # Fraud answers again; the next payment is approved and resets the breaker's count for later tests.
    assert payments.pay(tenant, src, dst, 10, uuid.uuid4().hex).json()["status"] == "settled"
