"""Fault drills for the payments system (seed 001): its ``drills.py`` plug-in, run by ``stackwright chaos payments``.

One tenant is onboarded with a few funded accounts (some with an email address). For each fault, payments
are sent at a steady rate (open loop) through the gateway, each by a well-behaved client that retries the
same body and ``Idempotency-Key`` on a 5xx or a transport error until it gets a final answer; a couple of
seconds in, the process is killed with SIGKILL and the supervisor brings it back. When every fault has run
the drill checks, per fault:

* every key the client saw answered has one payment row in the tenant's database, in the status the client
  was told (``lost`` counts the ones that do not), and every settled payment has exactly one transfer of two
  entries (``duplicated`` counts transfers or entries beyond that);
* a replay of every key answers the same status (``Idempotent-Replayed``);
* the ledger balances (entries sum to zero, every balance equals its entries) and money is conserved;
* audit recorded every final payment's event once and its chain verifies; the payer of every settled
  payment with an email got at least one email (notification is at-least-once: a duplicate is reported,
  not a failure).

A fault the issue names but pytest cannot afford (seconds of recovery each): payment, transaction, fraud,
Postgres, Redis, audit and notification, in turn, during one long storm.

:class:`RegionLoad` gives ``stackwright drill region-failover payments`` its writes: tenant onboarding through
the global entry while the primary region (us-east-1) is lost and the warm standby (sa-east-1) takes over.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

from stackwright.local.chaos import ChaosError, DrillRow, OpenLoop, Outcome, Recovery, kill_mid_flow
from stackwright.local.demokit import Client, bearer, idp_for
from stackwright.local.region_outage import present_ids
from stackwright.local.state import system_dir
from stackwright.runtime.db import database_url
from stackwright.spec import System

ACCOUNTS = 6
OPENING_BALANCE = 1_000_000  # minor units per account; payments of 1..20,000 drain some payers: rejections
RETRY_FOR_S = 120.0


@dataclass
class Phase:
    """One fault while payments flow: the keys sent, what each client was finally told, the recovery."""

    fault: str
    outcomes: list[Outcome] = field(default_factory=list)
    keys: dict[int, str] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    recovery: Recovery | None = None
    error: str | None = None

    def answered(self) -> dict[str, dict[str, Any]]:
        """key -> the final 201 body for every payment the client got an answer for."""
        return {self.keys[o.index]: o.body for o in self.outcomes
                if o.status == 201 and isinstance(o.body, dict) and "status" in o.body}


class Drill:
    """The payments drills against a running copy of the system (``state`` from ``start_detached``)."""

    FAULTS = ("payment", "transaction", "fraud", "postgres", "redis", "audit", "notification")

    def __init__(self, system: System, state: dict[str, Any], state_root: Path | None, *,
                 key_file: Path | None = None, warmup_s: float = 2.0, tail_s: float = 2.0,
                 recover_timeout_s: float = 60.0) -> None:
        self.system = system
        self.state = state
        self.state_root = state_root
        self.admin_url = state["resources"]["db"]
        self.platform_url = state["resources"]["platform"]
        self.idp = idp_for(system, key_file or system_dir(system, state_root) / "idp-key.pem")
        self.admin = bearer(self.idp.mint("chaos-admin", ["platform-admin"], ttl_s=3600))
        self.run_id = uuid.uuid4().hex[:8]
        self.warmup_s = warmup_s
        self.tail_s = tail_s
        self.recover_timeout_s = recover_timeout_s
        self.phases: list[Phase] = []
        self.tenant = ""
        self.accounts: list[str] = []
        self.emails: dict[str, str] = {}  # account -> payer email

    def token(self) -> dict[str, str]:
        return bearer(self.idp.mint(f"chaos-{self.run_id}", [], extra={"tenant_id": self.tenant}, ttl_s=3600))

    async def _fetch(self, url: str, query: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    @property
    def tenant_url(self) -> str:
        return database_url(self.admin_url, f"tenant_{self.tenant}")

    async def setup(self, client: Client) -> None:
        """Onboard the drill's tenant and fund its accounts (every second one with an email address)."""
        created = await client.post("/tenants", json={"name": f"chaos-{self.run_id}", "email": "ops@example.com"},
                                    headers=self.admin)
        if created.status != 201:
            raise ChaosError(f"onboarding failed: {created.status} {created.body}")
        self.tenant = created.body["id"]
        for k in range(ACCOUNTS):
            email = f"payer{k}-{self.run_id}@example.com" if k % 2 == 0 else None
            made = await client.post("/accounts", json={"name": f"chaos {k}", "currency": "USD", "email": email,
                                                        "opening_balance": OPENING_BALANCE}, headers=self.token())
            if made.status != 201:
                raise ChaosError(f"opening an account failed: {made.status} {made.body}")
            self.accounts.append(made.body["id"])
            if email:
                self.emails[made.body["id"]] = email

    async def _pay_until_final(self, client: Client, phase: Phase, body: dict[str, Any], key: str) -> tuple[int, Any]:
        """A well-behaved client: the same body and key again on a 5xx or a transport error."""
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                reply = await client.post("/payments", json=body, headers={**self.token(), "Idempotency-Key": key})
                if reply.status < 500:
                    return reply.status, reply.body
                phase.retries[str(reply.status)] += 1
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                phase.retries[exc.__class__.__name__] += 1
            if time.monotonic() > deadline:
                raise ChaosError(f"a payment got no final answer within {RETRY_FOR_S:.0f}s")
            await asyncio.sleep(0.3)

    async def run_fault(self, client: Client, fault: str, rate: float, report: Callable[[str], None]) -> Phase:
        """Payments flow at ``rate``; kill -9 ``fault`` after the warm-up; keep paying until it is back."""
        phase = Phase(fault)
        rng = random.Random(f"{self.run_id}-{fault}")

        async def pay(i: int) -> tuple[int, Any]:
            src, dst = rng.sample(self.accounts, 2)
            key = phase.keys[i] = f"{self.run_id}-{fault}-{i}"
            return await self._pay_until_final(client, phase, {"from_account": src, "to_account": dst,
                                                               "amount": rng.randint(1, 20_000),
                                                               "currency": "USD"}, key)

        sender = OpenLoop(rate, pay)
        phase.outcomes = sender.outcomes
        sending = asyncio.create_task(sender.run())
        try:
            phase.recovery, phase.error = await kill_mid_flow(
                self.system.name, self.state_root, fault, report, warmup_s=self.warmup_s, tail_s=self.tail_s,
                timeout_s=self.recover_timeout_s)
        finally:
            sender.stop()
            await sending
        self.phases.append(phase)
        return phase

    # ------------------------------------------------------------------------------------------ checks

    async def _events_recorded(self, wanted: set[str], timeout_s: float = 60.0) -> set[str]:
        """The event ids of ``wanted`` audit has recorded, waiting until all are there (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await self._fetch(self.platform_url, "SELECT event_id FROM audit_log WHERE tenant_id = $1 "
                                     "AND event_id = ANY($2::text[])", self.tenant, sorted(wanted))
            got = {r["event_id"] for r in rows}
            if got >= wanted or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.5)

    async def _mails_delivered(self, read_mailbox: Any, wanted: set[str],
                               timeout_s: float = 60.0) -> Counter[tuple[str | None, str]]:
        """The run's outcome emails by (payment id, subject), waiting until every payment in ``wanted`` has one
        (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            mails = Counter((_payment_id(m), str(m["Subject"])) for m in read_mailbox(self.state_root,
                                                                                    self.system.name))
            if wanted <= {pid for pid, _ in mails} or time.monotonic() > deadline:
                return mails
            await asyncio.sleep(0.5)

    async def verify(self, client: Client) -> list[DrillRow]:
        """One table row per fault: answered, stored as answered, lost, duplicated, recovery times."""
        from stackwright.local.mailbox import read_mailbox

        ledger = await client.get("/ledger/check", headers=self.token())
        audit = await client.get("/audit/verify", headers=self.token())
        balances = await self._fetch(self.tenant_url, "SELECT sum(balance)::bigint AS total, min(balance) AS low "
                                     "FROM accounts WHERE kind = 'customer'")
        conserved = balances[0]["total"] == ACCOUNTS * OPENING_BALANCE and balances[0]["low"] >= 0
        all_answered = {k: b for p in self.phases for k, b in p.answered().items()}
        events = {f"payment:{b['id']}:{b['status']}" for b in all_answered.values()}
        recorded = await self._events_recorded(events)
        # One email per payment outcome: keyed by (payment id from the body, subject). Notification consumes
        # beside audit, not after it: wait for the mail as for audit's events (a read right after audit caught
        # up reported emails still on their way as never sent).
        settled_mailable = {b["id"] for b in all_answered.values()
                            if b["status"] == "settled" and b["from_account"] in self.emails}
        mails = await self._mails_delivered(read_mailbox, settled_mailable)
        mailed = {pid for pid, _ in mails}
        rows: list[DrillRow] = []
        for phase in self.phases:
            answered = phase.answered()
            stored = {r["idempotency_key"]: r for r in await self._fetch(
                self.tenant_url, "SELECT idempotency_key, id, status FROM payments WHERE idempotency_key = ANY($1)",
                list(phase.keys.values()))}
            ids = [r["id"] for r in stored.values()]
            transfers = Counter(r["id"] for r in await self._fetch(
                self.tenant_url, "SELECT t.id FROM transfers t JOIN entries e ON e.transfer_id = t.id "
                "WHERE t.id = ANY($1::uuid[])", ids))
            row = DrillRow(fault=phase.fault, acknowledged=len(answered))
            same = [k for k, b in answered.items() if k in stored and stored[k]["status"] == b["status"]
                    and str(stored[k]["id"]) == b["id"]]
            row.counted = len(same)
            row.lost = len(answered) - row.counted
            settled = {stored[k]["id"] for k in same if stored[k]["status"] == "settled"}
            # Each settled payment is one transfer of two entries; anything else is money moved twice or wrongly.
            row.duplicated = sum(abs(n - 2) for t, n in transfers.items()) + sum(
                1 for t in transfers if t not in settled)
            row.duplicated += sum(1 for t in settled if t not in transfers)
            row.extra = len(set(stored) - set(answered))
            row.failed = sum(phase.retries.values())
            missing_events = [k for k, b in answered.items() if f"payment:{b['id']}:{b['status']}" not in recorded]
            unmailed = [k for k, b in answered.items() if b["status"] == "settled"
                        and b["from_account"] in self.emails and b["id"] not in mailed]
            row.aggregates_ok = bool(ledger.body and ledger.body.get("balanced")) and conserved and \
                bool(audit.body and audit.body.get("ok")) and not missing_events and not unmailed
            if phase.recovery is not None:
                row.respawned_s, row.ready_s = phase.recovery.respawned_s, phase.recovery.ready_s
                after = [o for o in phase.outcomes if o.status == 201 and o.sent_at >= phase.recovery.killed_at]
                row.flow_s = min(o.sent_at + o.latency_s for o in after) - phase.recovery.killed_at if after else None
            statuses = Counter(b["status"] for b in answered.values())
            notes = ["outcomes: " + ", ".join(f"{k} x{n}" for k, n in sorted(statuses.items()))]
            if phase.retries:
                notes.append("retried after: " + ", ".join(f"{k} x{n}" for k, n in sorted(phase.retries.items())))
            if missing_events:
                notes.append(f"{len(missing_events)} payments' events not in audit")
            if unmailed:
                notes.append(f"{len(unmailed)} settled payments' payers got no email")
            if not conserved:
                notes.append(f"money not conserved: {balances[0]['total']} (low {balances[0]['low']})")
            if phase.error:
                notes.append(phase.error)
                row.aggregates_ok = False
            row.note = "; ".join(notes)
            rows.append(row)
        dupes = sum(n - 1 for n in mails.values() if n > 1)  # the same outcome emailed twice
        if rows and dupes:
            rows[-1].note += f"; {dupes} duplicate emails over the run (at-least-once)"
        return rows

    async def replays_agree(self, client: Client) -> int:
        """Replay every answered key with its body: how many answer a different status (should be 0)."""
        differ = 0
        for phase in self.phases:
            for key, body in phase.answered().items():
                again = await client.post("/payments", json={k: body[k] for k in (
                    "from_account", "to_account", "amount", "currency", "description")},
                    headers={**self.token(), "Idempotency-Key": key})
                if again.status != 201 or (again.body or {}).get("status") != body["status"]:
                    differ += 1
        return differ

    async def run(self, faults: list[str], *, rate: float = 10.0,
                  report: Callable[[str], None] = print) -> list[DrillRow]:
        """Run the faults in turn while payments flow, then check every answered payment."""
        unknown = [f for f in faults if f not in self.FAULTS]
        if unknown:
            raise ChaosError(f"unknown fault(s) {', '.join(unknown)} (payments drills: {', '.join(self.FAULTS)})")
        async with Client(self.state["gateway"], concurrency=128, timeout_s=30) as client:
            await self.setup(client)
            for fault in faults:
                await self.run_fault(client, fault, rate, report)
            report("checking every answered payment …")
            rows = await self.verify(client)
            differ = await self.replays_agree(client)
            report(f"replayed {sum(r.acknowledged for r in rows)} keys: {differ} answered differently")
            if differ and rows:
                rows[-1].aggregates_ok = False
                rows[-1].note += f"; {differ} replays answered differently"
            return rows


def _payment_id(message: Any) -> str | None:
    """The payment id an outcome email is about (its body starts ``Payment <id>: ...``)."""
    found = re.search(r"Payment ([0-9a-f-]{36})", message.get_content() if hasattr(message, "get_content")
                      else str(message))
    return found.group(1) if found else None


class RegionLoad:
    """Tenant registrations (``POST /tenants``): the 201 comes once the tenant's row, database, role,
    migrations and secret exist, so it acknowledges writes committed in the platform database. Onboarding
    creates a database per tenant, hence the low rate."""

    RATE = 2.0

    def __init__(self, system: System, key_file: Path) -> None:
        idp = idp_for(system, key_file)
        self.admin = bearer(idp.mint("region-drill", ["platform-admin"], ttl_s=3600))
        self.database = system.resources["platform"].database
        self.run = uuid.uuid4().hex[:6]

    async def setup(self, client: httpx.AsyncClient) -> None:
        """Nothing to prepare: each write is a new tenant."""

    async def write(self, client: httpx.AsyncClient, i: int) -> str | None:
        """Register tenant ``i`` of this run; its id when onboarded (201), None otherwise."""
        name = f"drill-{self.run}-{i}"
        resp = await client.post("/tenants", json={"name": name, "email": f"{name}@drill.example.com"},
                                 headers=self.admin)
        return str(resp.json()["id"]) if resp.status_code == 201 else None

    async def present(self, server_url: str, keys: list[str]) -> set[str]:
        """The tenant ids among ``keys`` in the platform database of the server at ``server_url``."""
        return await present_ids(server_url, self.database, "SELECT id FROM tenants WHERE id = ANY($1::text[])",
                                 keys)
