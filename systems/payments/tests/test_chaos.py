"""kill -9 of payment, transaction and Postgres in the middle of a transfer storm: every payment a client
retries (same Idempotency-Key) ends with one outcome, and the ledger loses and doubles nothing."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from stackwright.local.chaos import process_pid

#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any


def _pay_until_final(p: Payments, tenant: str, body: dict[str, object], key: str) -> httpx.Response:
    """A well-behaved client: retries the same request and key on 5xx and connection errors."""
    deadline = time.monotonic() + 90
    headers = {**p.token(tenant), "Idempotency-Key": key}
    while True:
        try:
            resp = httpx.post(p.state["gateway"] + "/payments", json=body, headers=headers, timeout=30)
            if resp.status_code < 500:
                return resp
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "payment never reached a final answer"
        time.sleep(0.3)


def test_kill_9_of_payment_transaction_and_postgres_mid_storm(payments: Payments) -> None:
    tenant = payments.new_tenant("chaos")
    accounts = [payments.account(tenant, 20_000) for _ in range(4)]
    rng = random.Random(11)
    moves = [({"from_account": a, "to_account": b, "amount": rng.randint(1, 3_000), "currency": "USD"},
              uuid.uuid4().hex) for a, b in (rng.sample(accounts, 2) for _ in range(90))]
    done = threading.Event()

    def killer() -> None:
        for target in ("payment", "transaction", "postgres"):
            time.sleep(1.5)
            pid = process_pid(payments.fresh_state(), target)
            assert pid, target
            os.kill(pid, signal.SIGKILL)
            # wait for the supervisor to bring it back before the next fault
            payments.wait_until(lambda t=target, old=pid: process_pid(payments.fresh_state(), t) not in (None, old), 60)
        done.set()

    chaos = threading.Thread(target=killer)
    chaos.start()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda m: _pay_until_final(payments, tenant, *m), moves))
    chaos.join(120)
    assert done.is_set()
    # Replaying every key now answers the same final outcome (nothing pending, nothing changed).
    replays = [_pay_until_final(payments, tenant, *m) for m in moves]
    assert [r.json()["status"] for r in replays] == [a.json()["status"] for a in answers]
    assert all(r.headers.get("idempotent-replayed") == "true" for r in replays)
    statuses = [a.json()["status"] for a in answers]
    assert set(statuses) <= {"settled", "rejected", "held"}, statuses
    check = payments.client.get("/ledger/check", headers=payments.token(tenant)).json()
    assert check["balanced"], check
    assert check["transfers"] == 4 + statuses.count("settled")  # 4 opening deposits; nothing posted twice
    balances = [payments.client.get(f"/accounts/{a}", headers=payments.token(tenant)).json()["balance"]
                for a in accounts]
    assert sum(balances) == 80_000 and min(balances) >= 0
