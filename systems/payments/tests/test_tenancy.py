"""Tenant onboarding for real: a database, a role that can reach only it, credentials in the secret store,
tenant.created fanned out; resumable after kill -9; tenants isolated on every route."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from stackwright.local.chaos import process_pid
from stackwright.local.idp import DevIdP

#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any


def _secrets(p: Payments) -> tuple[Path, dict[str, str]]:
    path = p.state_root / "payments" / "secrets" / "tenant-secrets.json"
    return path, json.loads(path.read_text())


def test_onboarding_makes_a_database_a_private_role_and_a_secret(payments: Payments) -> None:
    tenant = payments.new_tenant()
    db = f"tenant_{tenant}"
    assert payments.sql(payments.admin_url, "SELECT 1 FROM pg_database WHERE datname = $1", db)
    assert payments.sql(payments.admin_url, "SELECT 1 FROM pg_roles WHERE rolname = $1", db)
    # Nobody but the tenant's role (and the superuser) may connect: PUBLIC has no CONNECT.
    acl = payments.sql(payments.admin_url, "SELECT datacl::text AS acl FROM pg_database WHERE datname = $1",
                       db)[0]["acl"]
    assert "=Tc/" not in acl and "=c/" not in acl, acl
    path, values = _secrets(payments)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert values[f"tenant_{tenant}_db_user"] == db
    assert values[f"tenant_{tenant}_db_url"].endswith(f"/{db}")
    # The tables were made by the tenant's migrations.
    tables = {r["tablename"] for r in payments.sql(values[f"tenant_{tenant}_db_url"],
                                                   "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"accounts", "entries", "transfers", "payments", "fraud_verdicts"} <= tables


def test_a_tenant_role_cannot_connect_to_another_tenants_database(payments: Payments) -> None:
    a, b = payments.new_tenant(), payments.new_tenant()
    _, values = _secrets(payments)
    a_url = values[f"tenant_{a}_db_url"]
    other = a_url.rsplit("/", 1)[0] + f"/tenant_{b}"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        payments.sql(other, "SELECT 1")


def test_every_subscriber_consumed_tenant_created(payments: Payments) -> None:
    tenant = payments.new_tenant()
    import redis

    r = redis.Redis.from_url(payments.state["backing"]["redis"]["url"], decode_responses=True)
    stream = "payments-tenant-events"

    def drained() -> bool:
        # Every subscriber's group has been handed the newest event (the tenant's) and acked everything.
        head = r.xinfo_stream(stream)["last-generated-id"]
        groups = {g["name"]: g for g in r.xinfo_groups(stream)}
        return all(groups[f"{stream}-{svc}"]["pending"] == 0 and groups[f"{stream}-{svc}"]["last-delivered-id"] == head
                   for svc in ("account", "payment", "transaction", "fraud", "audit"))

    payments.wait_until(drained, 20)
    # audit recorded it in the tenant's chain
    kinds = payments.wait_until(lambda: [e["kind"] for e in payments.client.get(
        "/audit/events", headers=payments.token(tenant)).json()], 20)
    assert kinds == ["tenant.created"]


def test_same_name_again_answers_the_same_tenant(payments: Payments) -> None:
    name = f"again-{uuid.uuid4().hex[:6]}"
    first = payments.client.post("/tenants", json={"name": name, "email": "a@ex.com"}, headers=payments.admin())
    second = payments.client.post("/tenants", json={"name": name, "email": "a@ex.com"}, headers=payments.admin())
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    taken = payments.client.post("/tenants", json={"name": name, "email": "b@ex.com"}, headers=payments.admin())
    assert taken.status_code == 409


def test_kill_9_mid_onboarding_then_it_completes_exactly_once(payments: Payments) -> None:
    name = f"slow-{uuid.uuid4().hex[:6]}"
    outcome: dict[str, object] = {}

    def onboard() -> None:
        try:
            outcome["resp"] = httpx.post(payments.state["gateway"] + "/tenants",
                                         json={"name": name, "email": "s@ex.com"}, headers=payments.admin(), timeout=60)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=onboard)
    worker.start()
    # Wait until it is part way (database made, not migrated), then kill -9 the registration service.
    row = payments.wait_until(lambda: next(iter(payments.sql(
        payments.platform_url, "SELECT id, step FROM tenants WHERE name = $1 AND step = 'database'", name)), None), 30)
    pid = process_pid(payments.fresh_state(), "tenant-registration")
    assert pid
    os.kill(pid, signal.SIGKILL)
    worker.join(60)
    assert "error" in outcome or outcome["resp"].status_code >= 500  # the caller saw the crash
    tenant = row["id"]
    # The restarted service resumes it; a client retry of the same name meets the same tenant.
    payments.wait_until(lambda: payments.sql(payments.platform_url, "SELECT 1 FROM tenants WHERE id = $1 AND "
                                             "status = 'active'", tenant), 60)
    retry = payments.client.post("/tenants", json={"name": name, "email": "s@ex.com"}, headers=payments.admin())
    assert retry.status_code == 200 and retry.json()["id"] == tenant
    rows = payments.sql(payments.platform_url, "SELECT id, attempts FROM tenants WHERE name = $1", name)
    assert len(rows) == 1 and rows[0]["attempts"] >= 2
    assert len(payments.sql(payments.admin_url, "SELECT 1 FROM pg_database WHERE datname = $1",
                            f"tenant_{tenant}")) == 1
    # It works: an account can be opened and the migrations ran once.
    payments.account(tenant, 100)
    _, values = _secrets(payments)
    applied = payments.sql(values[f"tenant_{tenant}_db_url"], "SELECT name FROM schema_migrations")
    assert [r["name"] for r in applied] == ["0001_ledger.sql", "0002_reviews.sql", "0003_generic_plans.sql"]


def test_unknown_and_suspended_tenants_are_refused(payments: Payments) -> None:
    unknown = payments.client.get("/accounts", headers=payments.token("tdeadbeef0000"))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    tenant = payments.new_tenant()
    assert payments.client.get("/accounts", headers=payments.token(tenant)).status_code == 200
    assert payments.client.post(f"/tenants/{tenant}/suspend", headers=payments.admin()).status_code == 200
    # Services cache an active verdict for 5 s.
    payments.wait_until(lambda: payments.client.get("/accounts", headers=payments.token(tenant)).status_code == 409, 15)


def test_cross_tenant_attempts_on_every_route_all_fail(payments: Payments) -> None:
    a, b = payments.new_tenant(), payments.new_tenant()
    src, dst = payments.account(a, 10_000, email="a@ex.com"), payments.account(a, 0)
    paid = payments.pay(a, src, dst, 500)
    assert paid.status_code == 201 and paid.json()["status"] == "settled"
    pid = paid.json()["id"]
    mine = payments.account(b, 10_000)
    tb = payments.token(b)
    c = payments.client
    attempts = [
        c.get(f"/accounts/{src}", headers=tb),
        c.get(f"/payments/{pid}", headers=tb),
        c.post("/payments", json={"from_account": src, "to_account": dst, "amount": 1, "currency": "USD"},
               headers={**tb, "Idempotency-Key": uuid.uuid4().hex}),
        c.post("/payments", json={"from_account": mine, "to_account": dst, "amount": 1, "currency": "USD"},
               headers={**tb, "Idempotency-Key": uuid.uuid4().hex}),
        c.get(f"/ledger/accounts/{src}/entries", headers=tb),
        c.get(f"/fraud/verdicts/{pid}", headers=tb),
        c.post("/tenants", json={"name": "sneaky", "email": "x@ex.com"}, headers=tb),
        c.get(f"/tenants/{a}", headers=tb),
        c.post(f"/tenants/{a}/suspend", headers=tb),
        # a token naming no tenant, and one signed by someone else's key
        c.get("/accounts", headers={"authorization": f"Bearer {payments.idp.mint('x', [])}"}),
    ]
    forger = DevIdP(payments.state_root / "forger.pem", issuer=payments.idp.issuer, audience=payments.idp.audience)
    forged = forger.mint("x", [], extra={"tenant_id": a})
    attempts.append(c.get("/accounts", headers={"authorization": f"Bearer {forged}"}))
    statuses = [r.status_code for r in attempts]
    assert all(400 <= s < 500 for s in statuses), statuses
    assert statuses[-1] == 401 and statuses[-2] == 403
    # B sees only B's things; A's money did not move.
    assert [x["id"] for x in c.get("/accounts", headers=tb).json()] == [mine]
    assert c.get(f"/accounts/{src}", headers=payments.token(a)).json()["balance"] == 9_500
    assert c.get("/ledger/check", headers=tb).json()["transfers"] == 1  # B's opening deposit only


def test_pools_stay_within_the_budget(payments: Payments) -> None:
    """Six tenants, two rounds of payments: every tenant keeps working, and the tenant connections Postgres
    sees stay within the 4 tenant-pool services x the spec's budget, at most pool.max per service and tenant.
    (Eviction under a budget smaller than the tenants: tests/runtime/test_tenant_budget.py.)"""
    tenants_spec = payments.system.resources["db"].tenants
    budget, pool_max = tenants_spec.connection_budget, tenants_spec.pool.max
    tenants = [payments.new_tenant("pool") for _ in range(6)]
    accounts = {t: (payments.account(t, 1_000), payments.account(t)) for t in tenants}
    for _ in range(2):
        for t in tenants:
            src, dst = accounts[t]
            assert payments.pay(t, src, dst, 1).json()["status"] == "settled"
    rows = payments.sql(payments.admin_url, "SELECT datname, count(*) AS n FROM pg_stat_activity "
                        "WHERE usename LIKE 'tenant_%' GROUP BY datname")
    per_db = {r["datname"]: r["n"] for r in rows}
    assert all(f"tenant_{t}" in per_db for t in tenants), per_db
    assert sum(per_db.values()) <= 4 * budget, per_db
    assert all(n <= 4 * pool_max for n in per_db.values()), per_db
