"""Money for real: Idempotency-Key semantics, the double-entry invariant after a concurrent transfer storm,
fraud verdicts, the audit chain, and hostile input that posts nothing."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any


@pytest.fixture(scope="module")
def tenant(payments: Payments) -> str:
    return payments.new_tenant("money")


def _transfers(p: Payments, tenant: str) -> int:
    return int(p.client.get("/ledger/check", headers=p.token(tenant)).json()["transfers"])


def test_same_key_same_body_replays_the_first_answer(payments: Payments, tenant: str) -> None:
    src, dst = payments.account(tenant, 5_000), payments.account(tenant)
    key = uuid.uuid4().hex
    first = payments.pay(tenant, src, dst, 1_200, key)
    again = payments.pay(tenant, src, dst, 1_200, key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = payments.pay(tenant, src, dst, 1_201, key)
    assert other.status_code == 422
    balance = payments.client.get(f"/accounts/{src}", headers=payments.token(tenant)).json()["balance"]
    assert balance == 3_800, first.json()  # moved once


def test_concurrent_duplicates_make_one_payment(payments: Payments, tenant: str) -> None:
    src, dst = payments.account(tenant, 10_000), payments.account(tenant)
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: payments.pay(tenant, src, dst, 700, key), range(24)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert payments.client.get(f"/accounts/{dst}", headers=payments.token(tenant)).json()["balance"] == 700


def test_transfer_storm_keeps_the_ledger_balanced(payments: Payments) -> None:
    tenant = payments.new_tenant("storm")
    accounts = [payments.account(tenant, 10_000) for _ in range(4)]
    rng = random.Random(7)
    moves = [(rng.sample(accounts, 2), rng.randint(1, 4_000)) for _ in range(120)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda m: payments.pay(tenant, m[0][0], m[0][1], m[1]), moves))
    statuses = [a.json()["status"] for a in answers if a.status_code == 201]
    assert len(statuses) == len(moves), [a.text for a in answers if a.status_code != 201][:3]
    assert set(statuses) <= {"settled", "rejected"}
    assert statuses.count("settled") > 0 and statuses.count("rejected") > 0  # the storm hit empty accounts too
    check = payments.client.get("/ledger/check", headers=payments.token(tenant)).json()
    assert check["balanced"], check
    assert check["transfers"] == 4 + statuses.count("settled")  # 4 opening deposits
    balances = [payments.client.get(f"/accounts/{a}", headers=payments.token(tenant)).json()["balance"]
                for a in accounts]
    assert sum(balances) == 40_000 and min(balances) >= 0, balances


def test_fraud_declines_a_huge_payment_with_its_reason(payments: Payments, tenant: str) -> None:
    src, dst = payments.account(tenant, 5_000_000), payments.account(tenant)
    declined = payments.pay(tenant, src, dst, 2_000_000)
    assert declined.status_code == 201
    body = declined.json()
    assert body["status"] == "declined" and "amount_over_limit" in body["reasons"]
    assert body["fraud"]["rules_version"]
    held = payments.pay(tenant, src, dst, 300_000)
    assert held.json()["status"] == "held" and "large_amount" in held.json()["reasons"]
    assert payments.client.get(f"/accounts/{src}", headers=payments.token(tenant)).json()["balance"] == 5_000_000
    verdict = payments.client.get(f"/fraud/verdicts/{body['id']}", headers=payments.token(tenant)).json()
    assert verdict["decision"] == "decline"


def test_audit_chain_verifies_and_refuses_changes(payments: Payments) -> None:
    tenant = payments.new_tenant("audit")
    src, dst = payments.account(tenant, 1_000), payments.account(tenant)
    for _ in range(3):
        assert payments.pay(tenant, src, dst, 10).json()["status"] == "settled"
    verdict = payments.wait_until(lambda: (v := payments.client.get(
        "/audit/verify", headers=payments.token(tenant)).json())["entries"] == 4 and v, 20)
    assert verdict["ok"] and verdict["broken_at"] is None
    import asyncpg

    with pytest.raises(asyncpg.RaiseError):
        payments.sql(payments.platform_url, "UPDATE audit_log SET kind = 'x' WHERE tenant_id = $1", tenant)
    # Even someone who can switch the trigger off is caught by the chain.
    payments.sql(payments.platform_url, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
    try:
        payments.sql(payments.platform_url, "UPDATE audit_log SET body = jsonb_set(body, '{amount}', '1') "
                     "WHERE tenant_id = $1 AND seq = 3", tenant)
    finally:
        payments.sql(payments.platform_url, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
    tampered = payments.client.get("/audit/verify", headers=payments.token(tenant)).json()
    assert tampered["ok"] is False and tampered["broken_at"] == 3


@pytest.mark.parametrize("change", [
    {"amount": -5}, {"amount": 0}, {"amount": 10.5}, {"amount": "100"}, {"amount": 10**16},
    {"currency": "XXX"}, {"currency": "usd"}, {"currency": "EUR"}, {"to_account": "not-a-uuid"},
])
def test_bad_payments_are_4xx_and_post_nothing(payments: Payments, tenant: str, change: dict[str, object]) -> None:
    src, dst = payments.account(tenant, 1_000), payments.account(tenant)
    before = _transfers(payments, tenant)
    body = {"from_account": src, "to_account": dst, "amount": 10, "currency": "USD", **change}
    resp = payments.client.post("/payments", json=body, headers={**payments.token(tenant),
                                                                 "Idempotency-Key": uuid.uuid4().hex})
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert _transfers(payments, tenant) == before


def test_missing_key_huge_body_and_bad_json_are_4xx(payments: Payments, tenant: str) -> None:
    h = payments.token(tenant)
    no_key = payments.client.post("/payments", json={"from_account": str(uuid.uuid4()), "to_account": str(uuid.uuid4()),
                                                     "amount": 1, "currency": "USD"}, headers=h)
    assert no_key.status_code == 422
    huge = payments.client.post("/payments", content=b"{" + b" " * 200_000 + b"}",
                                headers={**h, "Idempotency-Key": "k", "content-type": "application/json"})
    assert huge.status_code == 413
    bad = payments.client.post("/accounts", content=b"{nope", headers={**h, "content-type": "application/json"})
    assert bad.status_code in (400, 422)
    neg = payments.client.post("/accounts", json={"name": "x", "currency": "USD", "opening_balance": -1}, headers=h)
    assert neg.status_code == 422


def test_fraud_unavailable_holds_for_review(payments: Payments, tenant: str) -> None:
    """Fraud's process is stopped (SIGSTOP: it neither answers nor is restarted), so scoring times out."""
    import os
    import signal

    from stackwright.local.chaos import process_pid

    src, dst = payments.account(tenant, 1_000), payments.account(tenant)
    pid = process_pid(payments.fresh_state(), "fraud")
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        resp = payments.pay(tenant, src, dst, 100)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert resp.status_code == 201
    assert resp.json()["status"] == "held" and resp.json()["reasons"] == ["fraud_unavailable"]
    assert payments.client.get(f"/accounts/{src}", headers=payments.token(tenant)).json()["balance"] == 1_000
    httpx.get(payments.state["gateway"] + "/fraud/rules", headers=payments.token(tenant), timeout=10)


def test_payer_gets_an_email_through_the_local_smtp_server(payments: Payments, tenant: str) -> None:
    from stackwright.local.mailbox import read_mailbox

    payer = f"payer-{uuid.uuid4().hex[:8]}@example.com"
    src, dst = payments.account(tenant, 9_999, email=payer), payments.account(tenant)
    assert payments.pay(tenant, src, dst, 1_234).json()["status"] == "settled"
    mails = payments.wait_until(lambda: [m for m in read_mailbox(payments.state_root, "payments")
                                         if m["To"] == payer], 30)
    assert len(mails) == 1
    assert mails[0]["Subject"] == "Payment sent: 12.34 USD"
    assert mails[0]["From"] == "no-reply@pay.example.com"
