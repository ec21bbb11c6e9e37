"""Transaction service: the tenant's double-entry ledger.

``POST /internal/transfers`` (called by payment and account with the caller's token; not routed by the
edge) posts one transfer as two entries (-amount on the payer, +amount on the payee) and moves both
balances, in one database transaction with both account rows locked (in id order, so two opposite
transfers cannot deadlock). The transfer id is the payment's: posting it again answers the first posting
(``replayed: true``) and changes nothing. Amounts are integer minor units. A payer without overdraft
whose balance would go below zero gets 409 (``insufficient-funds``): the table's CHECK (``no_overdraft``)
refuses the posting, which rolls back whole.

``GET /ledger/check`` proves the invariant for the caller's tenant: per currency the entries sum to zero,
and every account's balance equals the sum of its entries.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from fastapi import Depends
from pydantic import BaseModel, Field

from stackwright.runtime import Database, FastRequest, Problem, Service, problem_responses
from stackwright.runtime.tenancy import tenant_scope

svc = Service(title="transaction")
app = svc.app

# The caller's tenant from its verified token, and that tenant's own database.
tenancy, tenant_db = tenant_scope(svc, registry="platform", secrets="tenant-secrets",
                                  events="tenant-events", databases="db")


MAX_AMOUNT = 10**15  # minor units; far above any real payment, far below bigint's 9.2e18


class Transfer(BaseModel):
    id: uuid.UUID
    from_account: uuid.UUID
    to_account: uuid.UUID
    amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True, description="integer minor units (cents)")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


def _transfer(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "from_account": str(row["from_account"]), "to_account": str(row["to_account"]),
            "amount": row["amount"], "currency": row["currency"].strip()}


async def post_transfer(db: Database, t: Transfer) -> tuple[dict[str, Any], bool]:
    """Post ``t`` once; returns (the transfer, whether it had been posted before). Problems: 404 unknown
    account, 422 same account or currency mismatch, 409 insufficient funds."""
    if t.from_account == t.to_account:
        raise Problem(422, "a transfer needs two different accounts")
    async with db.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, currency, balance FROM accounts WHERE id = ANY($1::uuid[]) "
            "ORDER BY id FOR UPDATE", [t.from_account, t.to_account])
        accounts = {r["id"]: r for r in rows}
        if len(accounts) != 2:
            raise Problem(404, "unknown account")
        payer, payee = accounts[t.from_account], accounts[t.to_account]
        if payer["currency"].strip() != t.currency or payee["currency"].strip() != t.currency:
            raise Problem(422, f"both accounts must hold {t.currency}")
        try:
            # After the locks: a concurrent posting of the same id has committed (or rolled back) by now, and
            # this statement's snapshot sees it, so ON CONFLICT finds a posted transfer and changes nothing.
            row = await conn.fetchrow(POST_SQL, t.id, t.from_account, t.to_account, t.amount, t.currency)
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name != "no_overdraft":
                raise
            # The table's CHECK is the overdraft rule: the payer (without overdraft) would go below zero.
            raise Problem(409, "insufficient funds", type="https://pay.example.com/problems/insufficient-funds",
                          balance=payer["balance"]) from None
        if row is None:  # posted before: answer that posting
            return _transfer(await conn.fetchrow("SELECT * FROM transfers WHERE id = $1", t.id)), True
        return _transfer(row), False


#: The transfer, its two entries and both balances in one statement (one round trip instead of four; the
#: same transaction, constraints and row locks). Foreign keys and CHECKs (``no_overdraft``) are verified at
#: its end as usual. A transfer id posted before inserts nothing (no entries, no balance moved, no row).
POST_SQL = """
WITH transfer AS (
  INSERT INTO transfers (id, from_account, to_account, amount, currency)
  VALUES ($1::uuid, $2::uuid, $3::uuid, $4::bigint, $5::char(3)) ON CONFLICT (id) DO NOTHING RETURNING *
), entry AS (
  INSERT INTO entries (transfer_id, account_id, amount, currency)
  SELECT t.id, e.account_id, e.amount, t.currency FROM transfer t
  CROSS JOIN (VALUES ($2::uuid, -$4::bigint), ($3::uuid, $4::bigint)) AS e (account_id, amount)
), balance AS (
  UPDATE accounts SET balance = balance + CASE WHEN id = $2::uuid THEN -$4::bigint ELSE $4::bigint END
  WHERE id IN ($2::uuid, $3::uuid) AND EXISTS (SELECT 1 FROM transfer)
)
SELECT * FROM transfer
"""


# Called once per payment: a fast route (no FastAPI machinery per request), same checks and problem answers.
@svc.fast_route("POST", "/internal/transfers", status_code=201, body=Transfer, auth=True,
                responses=problem_responses(401, 403, 404, 409), response_model=dict[str, Any])
async def create_transfer(fast: FastRequest) -> dict[str, Any]:
    """Post one transfer of the caller's tenant (201 with ``replayed``); problems as :func:`post_transfer`."""
    assert fast.principal is not None  # auth=True
    async with tenancy.database(tenancy.tenant_of(fast.principal)) as db:
        transfer, replayed = await post_transfer(db, fast.body)
    return {**transfer, "replayed": replayed}


@app.get("/ledger/check", responses=problem_responses(401, 403, 404, 409))
async def check(scope: tuple[str, Database] = Depends(tenant_db)) -> dict[str, Any]:
    """The ledger invariant of the caller's tenant: ``balanced`` is true when every currency's entries sum
    to zero and no account's balance differs from the sum of its entries (those are listed)."""
    db = scope[1]
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        sums = await conn.fetch("SELECT currency, sum(amount)::bigint AS total, count(*) AS n FROM entries "
                                "GROUP BY currency ORDER BY currency")
        off = await conn.fetch(
            "SELECT a.id, a.balance, coalesce(sum(e.amount), 0)::bigint AS entries FROM accounts a "
            "LEFT JOIN entries e ON e.account_id = a.id GROUP BY a.id, a.balance "
            "HAVING a.balance <> coalesce(sum(e.amount), 0)")
        transfers = await conn.fetchval("SELECT count(*) FROM transfers")
    currencies = {r["currency"].strip(): r["total"] for r in sums}
    return {"tenant": scope[0], "currencies": currencies, "entries": sum(r["n"] for r in sums),
            "transfers": transfers,
            "mismatched_accounts": [{"id": str(r["id"]), "balance": r["balance"], "entries": r["entries"]}
                                    for r in off],
            "balanced": all(v == 0 for v in currencies.values()) and not off}


@app.get("/ledger/accounts/{account_id}/entries", responses=problem_responses(401, 403, 404, 409))
async def entries(account_id: uuid.UUID, scope: tuple[str, Database] = Depends(tenant_db)) -> list[dict[str, Any]]:
    """The last 100 entries of one of the caller's accounts, newest first."""
    rows = await scope[1].pool.fetch(
        "SELECT e.id, e.transfer_id, e.amount, e.currency FROM entries e WHERE e.account_id = $1 "
        "ORDER BY e.id DESC LIMIT 100", account_id)
    if not rows and not await scope[1].pool.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id):
        raise Problem(404, "no such account")
    return [{"id": r["id"], "transfer_id": str(r["transfer_id"]), "amount": r["amount"],
             "currency": r["currency"].strip()} for r in rows]
