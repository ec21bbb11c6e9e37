"""Account service: a tenant's accounts, one currency each, and their balances.

``POST /accounts`` opens an account; an ``opening_balance`` (integer minor units) is a deposit posted
through the ledger (transaction service) from the tenant's funding account of that currency, the
counter-party that may go negative, so every currency's entries still sum to zero.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import Depends, Request
from pydantic import BaseModel, Field

from stackwright.runtime import Database, Problem, Service, problem_responses
from stackwright.runtime.tenancy import tenant_scope

svc = Service(title="account")
app = svc.app
TRANSACTION_URL = svc.settings.service_url("transaction")
#: ISO 4217 codes this platform settles (an unknown code is 422, not a new currency).
CURRENCIES = ("USD", "EUR", "GBP", "BRL", "JPY", "CAD", "MXN", "CHF", "AUD")
MAX_AMOUNT = 10**15

# The caller's tenant from its verified token, and that tenant's own database.
tenancy, tenant_db = tenant_scope(svc, registry="platform", secrets="tenant-secrets",
                                  events="tenant-events", databases="db")

_http = httpx.AsyncClient(timeout=5.0)
svc.on_shutdown(_http.aclose)


class NewAccount(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description=f"one of {', '.join(CURRENCIES)}")
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")
    allow_overdraft: bool = False
    opening_balance: int = Field(0, ge=0, le=MAX_AMOUNT, strict=True, description="integer minor units")


def _account(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "currency": row["currency"].strip(), "email": row["email"],
            "allow_overdraft": row["allow_overdraft"], "balance": row["balance"]}


async def _funding_account(db: Database, currency: str) -> uuid.UUID:
    await db.pool.execute(
        "INSERT INTO accounts (id, name, currency, kind, allow_overdraft) VALUES ($1, $2, $3, 'funding', true) "
        "ON CONFLICT (currency) WHERE kind = 'funding' DO NOTHING", uuid.uuid4(), f"funding {currency}", currency)
    return await db.pool.fetchval("SELECT id FROM accounts WHERE kind = 'funding' AND currency = $1", currency)


@app.post("/accounts", status_code=201, responses=problem_responses(401, 403, 404, 409, 503))
async def open_account(body: NewAccount, request: Request,
                       scope: tuple[str, Database] = Depends(tenant_db)) -> dict[str, Any]:
    if body.currency not in CURRENCIES:
        raise Problem(422, f"unknown currency {body.currency}")
    db = scope[1]
    account_id = uuid.uuid4()
    await db.pool.execute("INSERT INTO accounts (id, name, currency, email, allow_overdraft) "
                          "VALUES ($1, $2, $3, $4, $5)", account_id, body.name, body.currency, body.email,
                          body.allow_overdraft)
    if body.opening_balance:
        funding = await _funding_account(db, body.currency)
        try:
            resp = await _http.post(f"{TRANSACTION_URL}/internal/transfers", headers={
                "authorization": request.headers.get("authorization", "")}, json={
                "id": str(uuid.uuid4()), "from_account": str(funding), "to_account": str(account_id),
                "amount": body.opening_balance, "currency": body.currency})
        except httpx.HTTPError:
            raise Problem(503, "the ledger is unavailable; the account was opened without its deposit",
                          headers={"Retry-After": "1"}, account_id=str(account_id)) from None
        if resp.status_code != 201:
            raise Problem(503, f"the ledger refused the deposit ({resp.status_code})", account_id=str(account_id))
    return _account(await db.pool.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id))


@app.get("/accounts", responses=problem_responses(401, 403, 404, 409))
async def list_accounts(scope: tuple[str, Database] = Depends(tenant_db)) -> list[dict[str, Any]]:
    """The caller's customer accounts (at most 1000, oldest first)."""
    rows = await scope[1].pool.fetch("SELECT * FROM accounts WHERE kind = 'customer' ORDER BY created_at LIMIT 1000")
    return [_account(r) for r in rows]


@app.get("/accounts/{account_id}", responses=problem_responses(401, 403, 404, 409))
async def get_account(account_id: uuid.UUID, scope: tuple[str, Database] = Depends(tenant_db)) -> dict[str, Any]:
    row = await scope[1].pool.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)
    if row is None:
        raise Problem(404, "no such account")
    return _account(row)
