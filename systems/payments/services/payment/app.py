"""Payment service: ``POST /payments`` with an ``Idempotency-Key``.

* Idempotency: the key is claimed by inserting the payment row ``pending`` (unique per tenant database, committed
  at once); fraud and the ledger are then asked with no database connection held, and the answer is stored in
  a second short statement. The same key with the same body answers the first answer (status and body, header
  ``Idempotent-Replayed: true``), the same key with another body is 422, and a concurrent duplicate waits for
  the request working on the key (in this process without a statement; in another by looking again), then
  replays its answer, so one payment is made. The payment id is derived from the key (:func:`payment_id_for`):
  a payment that cannot finish (ledger down) gives its claim up, one whose process dies leaves a pending row
  that a retry takes over once the claim's lease (``PAYMENT_CLAIM_LEASE_S``, longer than any request's remote
  calls) is out; either way the retry makes it under the same id (fraud keeps one verdict and the ledger one
  transfer per id, so nothing is posted twice; a transfer posted with other terms is 422).
* Overload: at most ``PAYMENT_MAX_IN_FLIGHT`` payments in progress per process; more are 503 with
  ``Retry-After`` at once (shed, not queued).
* Fraud: scored synchronously by the fraud service with a timeout (``FRAUD_TIMEOUT_S``, default 1 s)
  behind a circuit breaker (``FRAUD_BREAKER_FAILURES`` consecutive failures open it for
  ``FRAUD_BREAKER_OPEN_S``); when fraud is unavailable the payment is ``held`` for review, never approved.
* Outcomes (201): ``settled`` (posted), ``declined`` (fraud), ``held`` (fraud review or unavailable),
  ``rejected`` (insufficient funds). Each is published on payment-events after the commit (retried in the
  background while Redis or Postgres is away).
* Review: a held payment waits in ``GET /payments?status=held`` until a reviewer (a tenant token with the
  role ``PAYMENT_REVIEWER_ROLE``, default ``payments-reviewer``) releases it (``POST /payments/{id}/release``:
  posted to the ledger, ``settled``, or ``rejected`` if the payer's funds are gone meanwhile) or declines it
  (``POST /payments/{id}/decline``: nothing posted). The first decision stands; the outcome is published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from fastapi import Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stackwright.runtime import Database, FastRequest, Principal, Problem, Reply, Service, problem_responses
from stackwright.runtime.problems import PROBLEM_JSON
from stackwright.runtime.tenancy import tenant_scope

log = logging.getLogger("payment")

svc = Service(title="payment")
app = svc.app
FRAUD_URL = svc.settings.service_url("fraud")
TRANSACTION_URL = svc.settings.service_url("transaction")
payment_events = svc.topic("payment-events")
FRAUD_TIMEOUT_S = float(os.environ.get("FRAUD_TIMEOUT_S", "1.0"))
LEDGER_TIMEOUT_S = 5.0  # the whole ledger call, connecting included (the client session's total)
BREAKER_FAILURES = int(os.environ.get("FRAUD_BREAKER_FAILURES", "5"))
BREAKER_OPEN_S = float(os.environ.get("FRAUD_BREAKER_OPEN_S", "10"))
CURRENCIES = ("USD", "EUR", "GBP", "BRL", "JPY", "CAD", "MXN", "CHF", "AUD")
MAX_AMOUNT = 10**15
#: The token role that may release or decline held payments (besides the tenant_id claim).
REVIEWER_ROLE = os.environ.get("PAYMENT_REVIEWER_ROLE", "payments-reviewer")

# The caller's tenant from its verified token, and that tenant's own database.
tenancy, tenant_db = tenant_scope(svc, registry="platform", secrets="tenant-secrets",
                                  events="tenant-events", databases="db")

# aiohttp for the calls to fraud and transaction: httpx cost ~1.8 ms of this process' CPU per call (py-spy,
# 28% of the payment's CPU for two calls); aiohttp's client a fraction of that.
_session: aiohttp.ClientSession | None = None
_CALL_ERRORS = (aiohttp.ClientError, TimeoutError)


def _http() -> aiohttp.ClientSession:
    """The process' keep-alive client (made on first use: it needs the running loop)."""
    global _session
    if _session is None or _session.closed:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200),
                                         timeout=aiohttp.ClientTimeout(total=LEDGER_TIMEOUT_S))
    return _session


async def _close_http() -> None:
    if _session is not None:
        await _session.close()


svc.on_shutdown(_close_http)


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
    verdict: dict[str, Any] | None = None
    try:
        async with _http().post(f"{FRAUD_URL}/internal/score", headers={"authorization": auth},
                                timeout=aiohttp.ClientTimeout(total=FRAUD_TIMEOUT_S),
                                json={"payment_id": str(payment_id), "from_account": str(body.from_account),
                                      "to_account": str(body.to_account), "amount": body.amount}) as resp:
            if resp.status == 200:
                verdict = dict(await resp.json())
    except (*_CALL_ERRORS, ValueError):
        verdict = None
    fraud_breaker.record(verdict is not None)
    return verdict if verdict is not None else unavailable


def _request_hash(body: NewPayment) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


async def _publish_once(tenant: str, payment: dict[str, Any]) -> None:
    """Publish the payment's outcome event and queue the row's ``published`` mark; raises on any failure."""
    await payment_events.publish({**payment, "payment_id": payment["id"], "tenant_id": tenant,
                                  "id": f"payment:{payment['id']}:{payment['status']}",
                                  "type": f"payment.{payment['status']}"})
    _queue_marks(tenant, {uuid.UUID(payment["id"])})


#: Published payments whose rows are not marked yet, by tenant (with when the oldest was queued). The marks
#: ride on the tenant's next payment (one more CTE in its claim statement, no round trip of its own); a tenant
#: with no payment for MARK_AFTER_S gets them in one UPDATE of the background marker. Not a statement and a
#: commit per payment, and no second connection per tenant while its requests hold one. A mark lost with the
#: process only means that a replay of the key publishes the event again, which consumers record once (audit
#: by event id; notification is at-least-once anyway).
_unmarked: dict[str, tuple[float, set[uuid.UUID]]] = {}
MARK_AFTER_S = 1.0


def _queue_marks(tenant: str, ids: set[uuid.UUID]) -> None:
    _unmarked.setdefault(tenant, (time.monotonic(), set()))[1].update(ids)


def _take_marks(tenant: str) -> list[uuid.UUID]:
    """The tenant's queued marks, now the caller's to write (or to queue again if it fails)."""
    return list(_unmarked.pop(tenant, (0.0, set()))[1])


async def mark_published(older_than_s: float = 0.0) -> None:
    """Write the marks queued for at least ``older_than_s`` (one UPDATE per tenant); a failed tenant's marks
    stay queued."""
    now = time.monotonic()
    for tenant in [t for t, (since, _) in _unmarked.items() if now - since >= older_than_s]:
        ids = _take_marks(tenant)
        if not ids:
            continue
        try:
            # A lease of its own: the requests that published have ended.
            async with tenancy.dbs.lease(tenant) as db:
                await db.pool.execute("UPDATE payments SET published = true WHERE id = ANY($1::uuid[])", ids)
        except Exception as exc:
            log.warning("marking %d payments of %s published failed (%s); retrying", len(ids), tenant, exc)
            _queue_marks(tenant, set(ids))


@svc.background
async def mark_published_forever() -> None:
    while True:
        await asyncio.sleep(MARK_AFTER_S / 2)
        await mark_published(MARK_AFTER_S)


svc.on_shutdown(mark_published)  # a clean stop leaves no mark unwritten


async def _publish(tenant: str, payment: dict[str, Any]) -> None:
    """Publish the payment's outcome once it is committed. When that fails (Redis or Postgres away), this
    process keeps trying in the background (:func:`_publish_later`), so notification and audit get it
    without a client replaying the key; consumers record an event id once, so a repeat is harmless."""
    try:
        await _publish_once(tenant, payment)
    except Exception as exc:
        log.warning("publishing payment %s failed (%s); retrying in the background", payment["id"], exc)
        task = asyncio.create_task(_publish_later(tenant, payment))
        _retrying.add(task)
        task.add_done_callback(_retrying.discard)


_retrying: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones


async def _publish_later(tenant: str, payment: dict[str, Any], *, first_s: float = 0.5, max_s: float = 10.0,
                         give_up_s: float = 600.0) -> None:
    """Retry :func:`_publish_once` with exponential backoff (``first_s`` doubling up to ``max_s``) for up to
    ``give_up_s`` seconds; after that (or if this process dies first) ``published`` stays false and a
    replay of the key publishes it."""
    delay, deadline = first_s, time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        try:
            await _publish_once(tenant, payment)
            log.info("published payment %s after a retry", payment["id"])
            return
        except Exception:
            delay = min(delay * 2, max_s)
    log.error("gave up publishing payment %s; a replay of its key publishes it", payment["id"])


#: Claims the key and reads both accounts in one statement (its own short transaction): ``new_id`` and
#: ``claimed_at`` are the new row's when this request inserted it (null when the key exists), one row per
#: account found (account columns null when none is). It also marks ``$8``, the tenant's payments published
#: since (see ``_unmarked``). The row is committed ``pending`` at once: no connection or transaction is held
#: while fraud and the ledger are asked, so a slow fraud or ledger, or an overload, cannot pin this process'
#: tenant connections (holding them across the calls let 100 tenants exhaust the connection budget, and the
#: room made by closing other tenants' idle connections was paid back in reconnects, per payment).
CLAIM_SQL = """
WITH new AS (
  INSERT INTO payments (id, idempotency_key, request_hash, from_account, to_account, amount, currency, status)
  VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id, updated_at
), marked AS (
  UPDATE payments SET published = true WHERE id = ANY($8::uuid[])
)
SELECT n.id AS new_id, n.updated_at AS claimed_at, a.id, a.currency, a.email, a.kind
FROM (SELECT 1) one LEFT JOIN new n ON true LEFT JOIN accounts a ON a.id IN ($4, $5)
"""
#: An existing key's row, and whether its claim has outlived the lease ($2 seconds since it was claimed).
READ_CLAIM_SQL = """
SELECT id, request_hash, response_status, response, published, updated_at < now() - make_interval(secs => $2) AS stale
FROM payments WHERE idempotency_key = $1
"""
#: Take over a pending row whose claim outlived the lease (its request died: kill -9, a lost process); the
#: new ``updated_at`` is the new claim's token.
TAKEOVER_SQL = """
UPDATE payments SET updated_at = clock_timestamp()
WHERE id = $1 AND response IS NULL AND updated_at < now() - make_interval(secs => $2) RETURNING updated_at
"""
ACCOUNTS_SQL = "SELECT id, currency, email, kind FROM accounts WHERE id IN ($1, $2)"
#: Store the answer, unless one is stored already (the first answer stands).
STORE_SQL = """
UPDATE payments SET status = $2, fraud = $3, response_status = $4, response = $5, updated_at = now()
WHERE id = $1 AND response IS NULL RETURNING true
"""
#: Give up an unanswered claim (ledger unavailable, a cut request): as if the key had never been used, so the
#: client's retry claims it afresh at once. Only this claim's row (the token), never one taken over since.
RELEASE_SQL = "DELETE FROM payments WHERE id = $1 AND response IS NULL AND updated_at = $2"

#: The longest a request can work on a claimed key: fraud's timeout plus the ledger call's (the client
#: session's total) plus a margin for the statements. A pending row older than this belongs to a request that
#: died; a retry of its key takes it over (``PAYMENT_CLAIM_LEASE_S``).
CLAIM_LEASE_S = float(os.environ.get("PAYMENT_CLAIM_LEASE_S", str(FRAUD_TIMEOUT_S + LEDGER_TIMEOUT_S + 4.0)))

#: The requests of this process working on a key, by (tenant, key): a duplicate waits for the running one's
#: answer here, without a statement, then replays it.
_claims: dict[tuple[str, str], asyncio.Future[None]] = {}

#: Payments this process works on at once (``PAYMENT_MAX_IN_FLIGHT``); one more is refused at once with 503
#: and ``Retry-After`` instead of queueing without bound, so an overload is served as far as capacity allows,
#: the rest shed, and the backlog never outlives the load.
MAX_IN_FLIGHT = int(os.environ.get("PAYMENT_MAX_IN_FLIGHT", "64"))
_in_flight = 0

#: A payment's id is a function of its tenant-unique Idempotency-Key: a request that died after its claim
#: leaves a pending row taken over by the retry under the same id, and a released claim leaves nothing, so
#: the fraud service (one verdict per id) and the ledger (one transfer per id) answer as before: nothing is
#: posted twice.
_ID_NAMESPACE = uuid.UUID("5f0c7a52-8d3e-4c1b-9a6e-2b7d4e8f1a03")


def payment_id_for(idempotency_key: str) -> uuid.UUID:
    """The id of the payment made under ``idempotency_key`` (the same key always gives the same id)."""
    return uuid.uuid5(_ID_NAMESPACE, idempotency_key)


#: The Idempotency-Key header: required, printable ASCII without spaces, at most 200 characters.
IDEMPOTENCY_KEY = Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")


# The hot route, served ahead of FastAPI's machinery (runtime/fastpath.py), documented as usual.
@svc.fast_route("POST", "/payments", status_code=201, body=NewPayment, auth=True,
                headers={"Idempotency-Key": IDEMPOTENCY_KEY}, response_model=dict[str, Any],
                responses=problem_responses(401, 403, 404, 409, 503))
async def create_payment(fast: FastRequest) -> Reply:
    """Make a payment once per ``Idempotency-Key`` (see the module docstring): 201 with its outcome, or the
    first answer again (``Idempotent-Replayed: true``); 422 for the key with another body; 503 with
    ``Retry-After`` when this process already works on ``PAYMENT_MAX_IN_FLIGHT`` payments."""
    global _in_flight
    assert fast.principal is not None  # auth=True
    tenant = tenancy.tenant_of(fast.principal)
    if _in_flight >= MAX_IN_FLIGHT:
        raise Problem(503, f"this payment process is at its {MAX_IN_FLIGHT} payments in progress; retry",
                      headers={"Retry-After": "1"})
    _in_flight += 1
    try:
        async with tenancy.database(tenant) as db:
            return await _pay(tenant, db, fast.body, fast.header("idempotency-key") or "", fast.authorization or "")
    finally:
        _in_flight -= 1


async def _pay(tenant: str, db: Database, body: NewPayment, idempotency_key: str, auth: str) -> Reply:
    if body.currency not in CURRENCIES:
        raise Problem(422, f"unknown currency {body.currency}")
    if body.from_account == body.to_account:
        raise Problem(422, "payer and payee must be different accounts")
    digest = _request_hash(body)
    slot = (tenant, idempotency_key)
    while (running := _claims.get(slot)) is not None:
        await asyncio.shield(running)  # shielded: a waiter cut off must not cancel the running request's future
    done = _claims[slot] = asyncio.get_running_loop().create_future()
    try:
        status, response, replayed, published = await _claim_and_decide(tenant, db, body, idempotency_key, digest,
                                                                        auth)
    finally:
        del _claims[slot]
        done.set_result(None)
    # After the commit: an event describes a stored outcome only.
    if status == 201 and not (replayed and published):
        await _publish(tenant, response)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if status >= 400:
        headers["content-type"] = PROBLEM_JSON
    return Reply(response, status, headers)


async def _claim_and_decide(tenant: str, db: Database, body: NewPayment, idempotency_key: str, digest: str,
                            auth: str) -> tuple[int, dict[str, Any], bool, bool]:
    """Claim the key (committed at once), or replay its stored answer, or wait for the request of another
    process working on it (taking its claim over once the lease is out); then decide the payment with no
    connection held and store its answer. Returns (status, body, replayed, published before)."""
    pid, claim, accounts = await _claim(tenant, db, body, idempotency_key, digest)
    if claim is None:
        return accounts  # type: ignore[return-value]  # the stored answer
    try:
        status, response = await _decide(auth, pid, accounts, body)
    except BaseException:
        _release_later(db, pid, claim)  # in a task of its own: this one may be cancelled
        raise
    if await db.pool.fetchval(STORE_SQL, pid, response["status"] if status == 201 else "invalid",
                              json.dumps(response.get("fraud")), status, json.dumps(response)):
        return status, response, False, False
    # A request that took the claim over answered first (this one outlived its lease): its answer stands.
    row = await db.pool.fetchrow(READ_CLAIM_SQL, idempotency_key, CLAIM_LEASE_S)
    if row is None or row["response"] is None:
        raise Problem(503, "this payment's answer was not stored; retry with the same Idempotency-Key",
                      headers={"Retry-After": "1"})
    return row["response_status"], json.loads(row["response"]), True, row["published"]


async def _claim(tenant: str, db: Database, body: NewPayment, idempotency_key: str,
                 digest: str) -> tuple[uuid.UUID, Any, Any]:
    """(payment id, claim token, account rows) once this request owns the key, or (id, None, stored answer
    as (status, body, True, published)) when the key has one. Raises Problem 422 for another body."""
    waited = 0
    while True:
        marks = _take_marks(tenant)
        try:
            claimed = await db.pool.fetch(CLAIM_SQL, payment_id_for(idempotency_key), idempotency_key, digest,
                                          body.from_account, body.to_account, body.amount, body.currency, marks)
        except BaseException:
            _queue_marks(tenant, set(marks))  # not written: still to be
            raise
        if claimed[0]["new_id"] is not None:
            return claimed[0]["new_id"], claimed[0]["claimed_at"], claimed
        row = await db.pool.fetchrow(READ_CLAIM_SQL, idempotency_key, CLAIM_LEASE_S)
        if row is None:
            continue  # released meanwhile: claim it afresh
        if row["request_hash"] != digest:
            raise Problem(422, "this Idempotency-Key was used with a different request body")
        if row["response"] is not None:
            return row["id"], None, (row["response_status"], json.loads(row["response"]), True, row["published"])
        if row["stale"]:
            token = await db.pool.fetchval(TAKEOVER_SQL, row["id"], CLAIM_LEASE_S)
            if token is not None:
                return row["id"], token, await db.pool.fetch(ACCOUNTS_SQL, body.from_account, body.to_account)
        # Another process works on it (its request answers within the lease): look again soon.
        await asyncio.sleep(min(0.05 * 2**waited, 0.5))
        waited += 1


def _release_later(db: Database, pid: uuid.UUID, claim: Any) -> None:
    """Delete this request's unanswered claim in the background; if that fails too, the lease lets a retry
    take the row over."""
    async def release() -> None:
        try:
            await db.pool.execute(RELEASE_SQL, pid, claim)
        except Exception as exc:
            log.warning("releasing the claim of payment %s failed (%s); its lease frees it", pid, exc)

    task = asyncio.create_task(release())
    _retrying.add(task)
    task.add_done_callback(_retrying.discard)


async def _decide(auth: str, payment_id: uuid.UUID, rows: Any, body: NewPayment) -> tuple[int, dict[str, Any]]:
    """Score and post a payment, given the payer's and payee's account rows; returns its final (status, body).
    Raises Problem 503 (nothing stored) when the ledger cannot be reached, so a retry with the same key
    resumes, and 422 when the ledger holds this payment's transfer with other terms (the key was used with
    another body by a request cut before it stored its answer)."""
    accounts = {r["id"]: r for r in rows if r["id"] is not None}
    if len(accounts) != 2 or any(a["kind"] != "customer" for a in accounts.values()):
        return 404, {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "unknown account"}
    if any(a["currency"].strip() != body.currency for a in accounts.values()):
        return 422, {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
                     "detail": f"both accounts must hold {body.currency}"}
    payment = {"id": str(payment_id), "from_account": str(body.from_account), "to_account": str(body.to_account),
               "amount": body.amount, "currency": body.currency, "description": body.description,
               "payer_email": accounts[body.from_account]["email"]}
    verdict = await score(auth, payment_id, body)
    payment["fraud"] = verdict
    if verdict["decision"] == "decline":
        return 201, {**payment, "status": "declined", "reasons": verdict["reasons"]}
    if verdict["decision"] != "approve":
        return 201, {**payment, "status": "held", "reasons": verdict["reasons"]}
    if await _post_transfer(auth, payment, "retry with the same Idempotency-Key"):
        return 201, {**payment, "status": "settled", "reasons": []}
    return 201, {**payment, "status": "rejected", "reasons": ["insufficient_funds"]}


async def _post_transfer(auth: str, payment: dict[str, Any], retry: str) -> bool:
    """Post ``payment`` to the ledger as the transfer with the payment's id (posting it again is a no-op
    there, so a retry after a crash cannot move money twice). True when posted (or posted before), False
    when the payer has insufficient funds; Problem 503 (nothing changed here) when the ledger cannot be
    reached or fails; ``retry`` says how the caller retries."""
    try:
        async with _http().post(f"{TRANSACTION_URL}/internal/transfers", headers={"authorization": auth}, json={
                key: payment[key] for key in ("id", "from_account", "to_account", "amount", "currency")}) as resp:
            status = resp.status
            posted = await resp.json(content_type=None) if status == 201 else await resp.read()
    except (*_CALL_ERRORS, ValueError):
        raise Problem(503, f"the ledger is unavailable; {retry}", headers={"Retry-After": "1"}) from None
    if status == 409:
        return False
    if status != 201:
        raise Problem(503, f"the ledger answered {status}; {retry}", headers={"Retry-After": "1"})
    if any(posted.get(key) != payment[key] for key in _TERMS):
        # Posted before under this id with other terms: a cut request with the same key and another body.
        raise Problem(422, "this Idempotency-Key was used with a different request body")
    return True


#: What a transfer posted under a payment's id must agree on with the payment.
_TERMS = ("from_account", "to_account", "amount", "currency")


def _summary(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "status": row["status"], "amount": row["amount"], "currency": row["currency"].strip(),
            "from_account": str(row["from_account"]), "to_account": str(row["to_account"]),
            "fraud": json.loads(row["fraud"]) if row["fraud"] else None,
            "review": json.loads(row["review"]) if row["review"] else None, "created_at": row["created_at"].isoformat()}


@app.get("/payments/{payment_id}", responses=problem_responses(401, 403, 404, 409))
async def get_payment(payment_id: uuid.UUID, scope: tuple[str, Database] = Depends(tenant_db)) -> dict[str, Any]:
    """One payment of the caller's tenant: its current status, fraud verdict and review (null if none)."""
    row = await scope[1].pool.fetchrow("SELECT * FROM payments WHERE id = $1", payment_id)
    if row is None:
        raise Problem(404, "no such payment")
    return _summary(row)


STATUSES = ("pending", "settled", "declined", "held", "rejected")


@app.get("/payments", responses=problem_responses(401, 403, 404, 409))
async def list_payments(status: str = Query("held", pattern="^(" + "|".join(STATUSES) + ")$"),
                        limit: int = Query(50, ge=1, le=500),
                        scope: tuple[str, Database] = Depends(tenant_db)) -> list[dict[str, Any]]:
    """The caller's payments in one status, oldest first (default ``held``: the review queue)."""
    rows = await scope[1].pool.fetch("SELECT * FROM payments WHERE status = $1 ORDER BY created_at LIMIT $2",
                                     status, limit)
    return [_summary(r) for r in rows]


class Review(BaseModel):
    note: str | None = Field(None, max_length=500, pattern=r"^[^\x00]*$", description="the reviewer's reason")


#: What a review decision makes of a held payment: release posts it (settled, or rejected when the payer
#: no longer has the funds), decline ends it without touching the ledger.
REVIEW_REASONS = {"settled": [], "rejected": ["insufficient_funds"], "declined": ["review_declined"]}


async def _review(decision: str, payment_id: uuid.UUID, body: Review | None, request: Request, who: Principal,
                  scope: tuple[str, Database]) -> JSONResponse:
    """Apply a reviewer's ``decision`` (``release`` or ``decline``) to a held payment, once.

    The payment row is locked for the whole decision, so concurrent reviews serialise; the first decision
    is stored in ``review`` and a repeat of it answers the same (``Idempotent-Replayed: true``), the other
    decision afterwards is 409. Release posts the transfer with the payment's id (a no-op if a crashed
    earlier release already posted it); a ledger failure is 503 with nothing recorded (retry the release).
    The outcome is published on payment-events (``payment.settled`` / ``.rejected`` / ``.declined`` with
    the ``review``) after the commit. Problems: 404 unknown payment, 409 not held or decided otherwise.
    """
    tenant, db = scope
    async with db.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM payments WHERE id = $1 FOR UPDATE", payment_id)
        if row is None:
            raise Problem(404, "no such payment")
        review = json.loads(row["review"]) if row["review"] else None
        replayed = review is not None
        if review is not None and review["decision"] != decision:
            raise Problem(409, f"this payment was already reviewed ({review['decision']})", review=review)
        if review is None and row["status"] != "held":
            raise Problem(409, f"this payment is {row['status']}, not held for review", payment_status=row["status"])
        status = row["status"]
        if review is None:
            if decision == "release":
                posted = await _post_transfer(request.headers.get("authorization", ""), json.loads(row["response"]),
                                              "retry the release")
                status = "settled" if posted else "rejected"
            else:
                status = "declined"
            review = {"decision": decision, "by": who.sub, "at": datetime.now(UTC).isoformat(),
                      "note": body.note if body else None, "reasons": REVIEW_REASONS[status]}
            await conn.execute("UPDATE payments SET status = $2, review = $3, published = false, updated_at = now() "
                               "WHERE id = $1", payment_id, status, json.dumps(review))
    answer = {**json.loads(row["response"]), "status": status, "reasons": review["reasons"], "review": review}
    if not (replayed and row["published"]):
        await _publish(tenant, answer)
    return JSONResponse(answer, headers={"Idempotent-Replayed": "true"} if replayed else {})


reviewer = svc.principal(REVIEWER_ROLE)


@app.post("/payments/{payment_id}/release", responses=problem_responses(401, 403, 404, 409, 503))
async def release(payment_id: uuid.UUID, request: Request, body: Review | None = None,
                  who: Principal = Depends(reviewer), scope: tuple[str, Database] = Depends(tenant_db)) -> Any:
    """Release a held payment (role ``PAYMENT_REVIEWER_ROLE``): it is posted to the ledger, ``settled`` or
    ``rejected`` (insufficient funds now). 200 with the payment and its ``review``."""
    return await _review("release", payment_id, body, request, who, scope)


@app.post("/payments/{payment_id}/decline", responses=problem_responses(401, 403, 404, 409))
async def decline(payment_id: uuid.UUID, request: Request, body: Review | None = None,
                  who: Principal = Depends(reviewer), scope: tuple[str, Database] = Depends(tenant_db)) -> Any:
    """Decline a held payment (role ``PAYMENT_REVIEWER_ROLE``): ``declined``, nothing posted. 200 with the
    payment and its ``review``."""
    return await _review("decline", payment_id, body, request, who, scope)


@app.get("/payments-breaker", include_in_schema=False)
async def breaker_state() -> dict[str, Any]:
    return {"fraud": fraud_breaker.state, "consecutive_failures": fraud_breaker.count}
