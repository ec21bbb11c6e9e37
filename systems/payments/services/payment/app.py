"""Payment service: ``POST /payments`` with an ``Idempotency-Key``.

* Idempotency: the key is claimed by inserting the payment row (unique per tenant database); the same key
  with the same body answers the first answer (status and body, header ``Idempotent-Replayed: true``), the
  same key with another body is 422, and concurrent duplicates wait on the row's lock and then replay, so
  one payment is made. An answer is stored only once it is final; a payment interrupted (ledger down,
  process killed) stays ``pending`` and the retry with the same key finishes it (the ledger posts a
  transfer id once).
* Fraud: scored synchronously by the fraud service with a timeout (``FRAUD_TIMEOUT_S``, default 1 s)
  behind a circuit breaker (``FRAUD_BREAKER_FAILURES`` consecutive failures open it for
  ``FRAUD_BREAKER_OPEN_S``); when fraud is unavailable the payment is ``held`` for review, never approved.
* Outcomes (201): ``settled`` (posted), ``declined`` (fraud), ``held`` (fraud review or unavailable),
  ``rejected`` (insufficient funds). Each is published on payment-events after the commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from typing import Any

import httpx
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stackwright.runtime import Database, Problem, Service, problem_responses
from stackwright.runtime.tenancy import tenant_scope

log = logging.getLogger("payment")

svc = Service(title="payment")
app = svc.app
FRAUD_URL = svc.settings.service_url("fraud")
TRANSACTION_URL = svc.settings.service_url("transaction")
payment_events = svc.topic("payment-events")
FRAUD_TIMEOUT_S = float(os.environ.get("FRAUD_TIMEOUT_S", "1.0"))
BREAKER_FAILURES = int(os.environ.get("FRAUD_BREAKER_FAILURES", "5"))
BREAKER_OPEN_S = float(os.environ.get("FRAUD_BREAKER_OPEN_S", "10"))
CURRENCIES = ("USD", "EUR", "GBP", "BRL", "JPY", "CAD", "MXN", "CHF", "AUD")
MAX_AMOUNT = 10**15

# The caller's tenant from its verified token, and that tenant's own database.
tenancy, tenant_db = tenant_scope(svc, registry="platform", secrets="tenant-secrets",
                                  events="tenant-events", databases="db")

_http = httpx.AsyncClient(timeout=5.0, limits=httpx.Limits(max_connections=200))
svc.on_shutdown(_http.aclose)


class NewPayment(BaseModel):
    from_account: uuid.UUID
    to_account: uuid.UUID
    amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True, description="integer minor units (cents)")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str | None = Field(None, max_length=200, pattern=r"^[^\x00]*$")


class Breaker:
    """Consecutive-failure circuit breaker: open for ``open_s`` after ``failures`` failures in a row, then
    one trial call (half-open) decides whether it closes again."""

    def __init__(self, failures: int, open_s: float) -> None:
        self.failures = failures
        self.open_s = open_s
        self.count = 0
        self.opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.open_s:
            self.opened_at = time.monotonic()  # half-open: this call is the trial, others keep failing fast
            return True
        return False

    def record(self, ok: bool) -> None:
        if ok:
            self.count, self.opened_at = 0, None
        else:
            self.count += 1
            if self.count >= self.failures:
                self.opened_at = time.monotonic()

    @property
    def state(self) -> str:
        return "closed" if self.opened_at is None else "open"


fraud_breaker = Breaker(BREAKER_FAILURES, BREAKER_OPEN_S)


async def score(auth: str, payment_id: uuid.UUID, body: NewPayment) -> dict[str, Any]:
    """The fraud verdict ({decision, score, reasons, rules_version}); ``review`` with reason
    ``fraud_unavailable`` when fraud times out, fails or its breaker is open."""
    unavailable = {"decision": "review", "score": None, "reasons": ["fraud_unavailable"], "rules_version": None}
    if not fraud_breaker.allow():
        return {**unavailable, "breaker": "open"}
    try:
        resp = await _http.post(f"{FRAUD_URL}/internal/score", headers={"authorization": auth}, timeout=FRAUD_TIMEOUT_S,
                                json={"payment_id": str(payment_id), "from_account": str(body.from_account),
                                      "to_account": str(body.to_account), "amount": body.amount})
        ok = resp.status_code == 200
    except httpx.HTTPError:
        ok = False
    fraud_breaker.record(ok)
    return dict(resp.json()) if ok else unavailable


def _request_hash(body: NewPayment) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


async def _publish(db: Database, tenant: str, payment: dict[str, Any]) -> None:
    """Publish the payment's outcome once it is committed; a failure leaves ``published`` false and the
    next replay of the key publishes it (consumers record an event id once)."""
    try:
        await payment_events.publish({**payment, "payment_id": payment["id"], "tenant_id": tenant,
                                      "id": f"payment:{payment['id']}:{payment['status']}",
                                      "type": f"payment.{payment['status']}"})
        await db.pool.execute("UPDATE payments SET published = true WHERE id = $1", uuid.UUID(payment["id"]))
    except Exception:
        log.exception("publishing payment %s failed; the next replay of its key publishes it", payment["id"])


@app.post("/payments", status_code=201, responses=problem_responses(401, 403, 404, 409, 503))
async def create_payment(body: NewPayment, request: Request,
                         idempotency_key: str = Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                                       pattern=r"^[\x21-\x7e]+$"),
                         scope: tuple[str, Database] = Depends(tenant_db)) -> Any:
    if body.currency not in CURRENCIES:
        raise Problem(422, f"unknown currency {body.currency}")
    if body.from_account == body.to_account:
        raise Problem(422, "payer and payee must be different accounts")
    tenant, db = scope
    auth = request.headers.get("authorization", "")
    digest = _request_hash(body)
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO payments (id, idempotency_key, request_hash, from_account, to_account, amount, currency, "
            "status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (idempotency_key) DO NOTHING",
            uuid.uuid4(), idempotency_key, digest, body.from_account, body.to_account, body.amount, body.currency)
        async with conn.transaction():
            # The row lock serialises duplicates: the second waits for the first's answer, then replays it.
            row = await conn.fetchrow("SELECT * FROM payments WHERE idempotency_key = $1 FOR UPDATE", idempotency_key)
            if row["request_hash"] != digest:
                raise Problem(422, "this Idempotency-Key was used with a different request body")
            replayed = row["response"] is not None
            if replayed:
                status, response = row["response_status"], json.loads(row["response"])
            else:
                status, response = await _decide(conn, auth, row, body)
                await conn.execute("UPDATE payments SET status = $2, fraud = $3, response_status = $4, response = $5, "
                                   "updated_at = now() WHERE id = $1", row["id"],
                                   response["status"] if status == 201 else "invalid",
                                   json.dumps(response.get("fraud")), status, json.dumps(response))
    # After the commit: publishing marks the row (another connection), which must not wait on our own lock.
    if status == 201 and not (replayed and row["published"]):
        await _publish(db, tenant, response)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(response, status_code=status, headers=headers,
                        media_type="application/problem+json" if status >= 400 else None)


async def _decide(conn: Any, auth: str, row: Any, body: NewPayment) -> tuple[int, dict[str, Any]]:
    """Score and post a pending payment; returns its final (status, body). Raises Problem 503 (nothing
    stored) when the ledger cannot be reached, so a retry with the same key resumes."""
    accounts = {r["id"]: r for r in await conn.fetch(
        "SELECT id, currency, email, kind FROM accounts WHERE id = ANY($1::uuid[])",
        [body.from_account, body.to_account])}
    if len(accounts) != 2 or any(a["kind"] != "customer" for a in accounts.values()):
        return 404, {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "unknown account"}
    if any(a["currency"].strip() != body.currency for a in accounts.values()):
        return 422, {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
                     "detail": f"both accounts must hold {body.currency}"}
    payment = {"id": str(row["id"]), "from_account": str(body.from_account), "to_account": str(body.to_account),
               "amount": body.amount, "currency": body.currency, "description": body.description,
               "payer_email": accounts[body.from_account]["email"]}
    verdict = await score(auth, row["id"], body)
    payment["fraud"] = verdict
    if verdict["decision"] == "decline":
        return 201, {**payment, "status": "declined", "reasons": verdict["reasons"]}
    if verdict["decision"] != "approve":
        return 201, {**payment, "status": "held", "reasons": verdict["reasons"]}
    try:
        resp = await _http.post(f"{TRANSACTION_URL}/internal/transfers", headers={"authorization": auth}, json={
            "id": str(row["id"]), "from_account": str(body.from_account), "to_account": str(body.to_account),
            "amount": body.amount, "currency": body.currency})
    except httpx.HTTPError:
        raise Problem(503, "the ledger is unavailable; retry with the same Idempotency-Key",
                      headers={"Retry-After": "1"}) from None
    if resp.status_code == 409:
        return 201, {**payment, "status": "rejected", "reasons": ["insufficient_funds"]}
    if resp.status_code != 201:
        raise Problem(503, f"the ledger answered {resp.status_code}; retry with the same Idempotency-Key",
                      headers={"Retry-After": "1"})
    return 201, {**payment, "status": "settled", "reasons": []}


@app.get("/payments/{payment_id}", responses=problem_responses(401, 403, 404, 409))
async def get_payment(payment_id: uuid.UUID, scope: tuple[str, Database] = Depends(tenant_db)) -> dict[str, Any]:
    row = await scope[1].pool.fetchrow("SELECT id, status, amount, currency, from_account, to_account, fraud "
                                       "FROM payments WHERE id = $1", payment_id)
    if row is None:
        raise Problem(404, "no such payment")
    return {"id": str(row["id"]), "status": row["status"], "amount": row["amount"], "currency": row["currency"].strip(),
            "from_account": str(row["from_account"]), "to_account": str(row["to_account"]),
            "fraud": json.loads(row["fraud"]) if row["fraud"] else None}


@app.get("/payments-breaker", include_in_schema=False)
async def breaker_state() -> dict[str, Any]:
    return {"fraud": fraud_breaker.state, "consecutive_failures": fraud_breaker.count}
