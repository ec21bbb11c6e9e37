"""Held payments: a reviewer releases (posted once to the ledger) or declines them; the first decision
stands, concurrent and repeated reviews post nothing twice, and every outcome is published."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any
#: Over FRAUD_REVIEW_OVER (200,000) and under FRAUD_DECLINE_OVER: fraud answers "review" (large_amount).
HELD_AMOUNT = 300_000


@pytest.fixture(scope="module")
def tenant(payments: Payments) -> str:
    return payments.new_tenant("review")


def _held(p: Payments, tenant: str, src: str, dst: str, amount: int = HELD_AMOUNT) -> dict[str, Any]:
    resp = p.pay(tenant, src, dst, amount)
    assert resp.status_code == 201 and resp.json()["status"] == "held", resp.text
    return dict(resp.json())


def _balance(p: Payments, tenant: str, account: str) -> int:
    return int(p.client.get(f"/accounts/{account}", headers=p.token(tenant)).json()["balance"])


def _ledger(p: Payments, tenant: str) -> dict[str, Any]:
    return dict(p.client.get("/ledger/check", headers=p.token(tenant)).json())


def test_release_posts_the_held_payment_once(payments: Payments, tenant: str) -> None:
    src, dst = payments.account(tenant, 1_000_000, email=f"r-{uuid.uuid4().hex[:6]}@example.com"), \
        payments.account(tenant)
    held = _held(payments, tenant, src, dst)
    queue = payments.client.get("/payments", params={"status": "held"}, headers=payments.token(tenant)).json()
    assert held["id"] in [q["id"] for q in queue]
    before = _ledger(payments, tenant)["transfers"]
    # Concurrent releases of one payment (a double click, two reviewers): one transfer, one decision.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: payments.client.post(
            f"/payments/{held['id']}/release", json={"note": "customer called"},
            headers=payments.reviewer(tenant)), range(8)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"settled"}
    assert sum(a.headers.get("idempotent-replayed") != "true" for a in answers) == 1
    review = answers[0].json()["review"]
    assert review["decision"] == "release" and review["by"] == "reviewer-1" and review["note"] == "customer called"
    assert _balance(payments, tenant, src) == 1_000_000 - HELD_AMOUNT
    assert _balance(payments, tenant, dst) == HELD_AMOUNT
    check = _ledger(payments, tenant)
    assert check["balanced"] and check["transfers"] == before + 1, check
    entries = payments.client.get(f"/ledger/accounts/{dst}/entries", headers=payments.token(tenant)).json()
    assert [(e["transfer_id"], e["amount"]) for e in entries] == [(held["id"], HELD_AMOUNT)]
    # The first decision stands: declining afterwards is 409 and changes nothing.
    late = payments.client.post(f"/payments/{held['id']}/decline", headers=payments.reviewer(tenant))
    assert late.status_code == 409 and late.headers["content-type"].startswith("application/problem+json")
    shown = payments.client.get(f"/payments/{held['id']}", headers=payments.token(tenant)).json()
    assert shown["status"] == "settled" and shown["review"]["decision"] == "release"
    # It has left the review queue.
    assert held["id"] not in [q["id"] for q in payments.client.get(
        "/payments", headers=payments.token(tenant)).json()]


def test_decline_posts_nothing_and_is_final(payments: Payments, tenant: str) -> None:
    src, dst = payments.account(tenant, 500_000), payments.account(tenant)
    held = _held(payments, tenant, src, dst)
    before = _ledger(payments, tenant)["transfers"]
    first = payments.client.post(f"/payments/{held['id']}/decline", json={"note": "looks like fraud"},
                                 headers=payments.reviewer(tenant))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "declined" and first.json()["reasons"] == ["review_declined"]
    again = payments.client.post(f"/payments/{held['id']}/decline", json={"note": "looks like fraud"},
                                 headers=payments.reviewer(tenant))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert payments.client.post(f"/payments/{held['id']}/release",
                                headers=payments.reviewer(tenant)).status_code == 409
    assert _balance(payments, tenant, src) == 500_000 and _balance(payments, tenant, dst) == 0
    assert _ledger(payments, tenant)["transfers"] == before


def test_release_without_the_funds_any_more_is_rejected(payments: Payments, tenant: str) -> None:
    src, dst, other = payments.account(tenant, 400_000), payments.account(tenant), payments.account(tenant)
    held = _held(payments, tenant, src, dst)
    # Meanwhile the payer spends most of the money (small payments fraud approves).
    for _ in range(3):
        assert payments.pay(tenant, src, other, 40_000).json()["status"] == "settled"
    resp = payments.client.post(f"/payments/{held['id']}/release", headers=payments.reviewer(tenant))
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    assert resp.json()["reasons"] == ["insufficient_funds"]
    assert _balance(payments, tenant, src) == 280_000 and _balance(payments, tenant, dst) == 0
    assert _ledger(payments, tenant)["balanced"]


def test_only_reviewers_of_the_tenant_review_held_payments(payments: Payments, tenant: str) -> None:
    src, dst = payments.account(tenant, 600_000), payments.account(tenant)
    held = _held(payments, tenant, src, dst)
    url = f"/payments/{held['id']}/release"
    assert payments.client.post(url, headers=payments.token(tenant)).status_code == 403  # no reviewer role
    other = payments.new_tenant("review-other")
    assert payments.client.post(url, headers=payments.reviewer(other)).status_code == 404  # not its payment
    assert payments.client.post(f"/payments/{uuid.uuid4()}/release",
                                headers=payments.reviewer(tenant)).status_code == 404
    bad = payments.client.post(url, json={"note": 5}, headers=payments.reviewer(tenant))
    assert bad.status_code == 422
    settled = payments.pay(tenant, src, dst, 1_000).json()
    assert settled["status"] == "settled"
    not_held = payments.client.post(f"/payments/{settled['id']}/release", headers=payments.reviewer(tenant))
    assert not_held.status_code == 409
    assert _balance(payments, tenant, src) == 599_000  # only the small payment moved
    assert payments.client.get(f"/payments/{held['id']}", headers=payments.token(tenant)).json()["status"] == "held"


def test_review_outcomes_are_published_to_audit_and_the_payer(payments: Payments) -> None:
    from stackwright.local.mailbox import read_mailbox

    tenant = payments.new_tenant("review-events")
    payer = f"payer-{uuid.uuid4().hex[:8]}@example.com"
    src, dst = payments.account(tenant, 1_000_000, email=payer), payments.account(tenant)
    released, declined = _held(payments, tenant, src, dst), _held(payments, tenant, src, dst, 250_000)
    assert payments.client.post(f"/payments/{released['id']}/release",
                                headers=payments.reviewer(tenant)).status_code == 200
    assert payments.client.post(f"/payments/{declined['id']}/decline",
                                headers=payments.reviewer(tenant)).status_code == 200

    def audit_kinds() -> list[str] | None:
        events = payments.client.get("/audit/events", headers=payments.token(tenant)).json()
        kinds = sorted(e["kind"] for e in events)
        return kinds if len(kinds) >= 5 else None

    # tenant.created (deposits publish nothing), two payment.held, then the reviews' settled and declined.
    kinds = payments.wait_until(audit_kinds, 20)
    assert kinds == ["payment.declined", "payment.held", "payment.held", "payment.settled", "tenant.created"]
    assert payments.client.get("/audit/verify", headers=payments.token(tenant)).json()["ok"]
    subjects = payments.wait_until(lambda: (s := sorted(m["Subject"] for m in read_mailbox(
        payments.state_root, "payments") if m["To"] == payer)) and len(s) >= 4 and s, 30)
    assert subjects == ["Payment declined: 2500.00 USD", "Payment held for review: 2500.00 USD",
                        "Payment held for review: 3000.00 USD", "Payment sent: 3000.00 USD"]
