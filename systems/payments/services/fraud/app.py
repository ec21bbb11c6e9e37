"""Fraud service: scores a payment with versioned rules, each verdict with its reasons, recorded in the
tenant's database (``fraud_verdicts``; the first verdict of a payment id is kept, so a retried payment gets
the same answer).

Rules (version ``RULES_VERSION``); the strongest matching rule decides, the score is the sum of weights:

* ``amount_over_limit``: amount > ``FRAUD_DECLINE_OVER`` minor units (default 1,000,000) -> decline;
* ``large_amount``: amount > ``FRAUD_REVIEW_OVER`` (default 200,000) -> review;
* ``velocity``: the payer already has ``FRAUD_VELOCITY_MAX`` (default 600) scored payments in the last
  60 s -> review;
* ``new_counterparty``: the payer has never paid this payee before and amount > ``FRAUD_NEW_PAYEE_OVER``
  (default 50,000) -> review.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from fastapi import Depends
from pydantic import BaseModel, Field

from stackwright.runtime import Database, FastRequest, Principal, Problem, Service, problem_responses
from stackwright.runtime.tenancy import tenant_scope

svc = Service(title="fraud")
app = svc.app
RULES_VERSION = "2025-11-08.1"
DECLINE_OVER = int(os.environ.get("FRAUD_DECLINE_OVER", "1000000"))
REVIEW_OVER = int(os.environ.get("FRAUD_REVIEW_OVER", "200000"))
VELOCITY_MAX = int(os.environ.get("FRAUD_VELOCITY_MAX", "600"))
NEW_PAYEE_OVER = int(os.environ.get("FRAUD_NEW_PAYEE_OVER", "50000"))
RULES = [
    {"id": "amount_over_limit", "decision": "decline", "weight": 100, "when": f"amount > {DECLINE_OVER}"},
    {"id": "large_amount", "decision": "review", "weight": 40, "when": f"amount > {REVIEW_OVER}"},
    {"id": "velocity", "decision": "review", "weight": 30, "when": f">= {VELOCITY_MAX} payments by the payer in 60 s"},
    {"id": "new_counterparty", "decision": "review", "weight": 20,
     "when": f"first payment to this payee and amount > {NEW_PAYEE_OVER}"},
]
_RANK = {"approve": 0, "review": 1, "decline": 2}

# The caller's tenant from its verified token, and that tenant's own database.
tenancy, tenant_db = tenant_scope(svc, registry="platform", secrets="tenant-secrets",
                                  events="tenant-events", databases="db")


class ScoreRequest(BaseModel):
    payment_id: uuid.UUID
    from_account: uuid.UUID
    to_account: uuid.UUID
    amount: int = Field(gt=0, le=10**15, strict=True)


def _verdict(row: Any) -> dict[str, Any]:
    return {"payment_id": str(row["payment_id"]), "decision": row["decision"], "score": row["score"],
            "reasons": json.loads(row["reasons"]), "rules_version": row["rules_version"]}


async def evaluate(conn: Any, req: ScoreRequest) -> tuple[str, int, list[str]]:
    """(decision, score, reasons) of the rules for one payment."""
    hits: list[str] = []
    if req.amount > DECLINE_OVER:
        hits.append("amount_over_limit")
    if req.amount > REVIEW_OVER:
        hits.append("large_amount")
    recent = await conn.fetchval("SELECT count(*) FROM fraud_verdicts WHERE from_account = $1 "
                                 "AND decided_at > now() - interval '60 seconds'", req.from_account)
    if recent >= VELOCITY_MAX:
        hits.append("velocity")
    if req.amount > NEW_PAYEE_OVER and not await conn.fetchval(
            "SELECT 1 FROM fraud_verdicts WHERE from_account = $1 AND to_account = $2 AND decision = 'approve' "
            "LIMIT 1", req.from_account, req.to_account):
        hits.append("new_counterparty")
    rules = {r["id"]: r for r in RULES}
    decision = max((rules[h]["decision"] for h in hits), key=_RANK.__getitem__, default="approve")
    return decision, sum(rules[h]["weight"] for h in hits), hits


# Called once per payment: a fast route (no FastAPI machinery per request), same checks and problem answers.
@svc.fast_route("POST", "/internal/score", body=ScoreRequest, auth=True,
                responses=problem_responses(401, 403, 404, 409), response_model=dict[str, Any])
async def score(fast: FastRequest) -> dict[str, Any]:
    """Score a payment of the caller's tenant and record the verdict (the first one recorded is answered)."""
    assert fast.principal is not None  # auth=True
    req: ScoreRequest = fast.body
    async with tenancy.database(tenancy.tenant_of(fast.principal)) as db, db.pool.acquire() as conn:
        decision, points, reasons = await evaluate(conn, req)
        row = await conn.fetchrow(
            "INSERT INTO fraud_verdicts (payment_id, from_account, to_account, amount, decision, score, reasons, "
            "rules_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (payment_id) DO NOTHING RETURNING *",
            req.payment_id, req.from_account, req.to_account, req.amount, decision, points, json.dumps(reasons),
            RULES_VERSION)
        if row is None:
            row = await conn.fetchrow("SELECT * FROM fraud_verdicts WHERE payment_id = $1", req.payment_id)
    return _verdict(row)


@app.get("/fraud/rules", responses=problem_responses(401, 403))
async def rules(who: Principal = Depends(svc.principal())) -> dict[str, Any]:
    return {"version": RULES_VERSION, "rules": RULES}


@app.get("/fraud/verdicts/{payment_id}", responses=problem_responses(401, 403, 404, 409))
async def verdict(payment_id: uuid.UUID, scope: tuple[str, Database] = Depends(tenant_db)) -> dict[str, Any]:
    row = await scope[1].pool.fetchrow("SELECT * FROM fraud_verdicts WHERE payment_id = $1", payment_id)
    if row is None:
        raise Problem(404, "no verdict for this payment")
    return _verdict(row)
