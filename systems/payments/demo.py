"""``stackwright demo payments``: onboard three tenants, run concurrent payments with duplicate
Idempotency-Keys, a fraud decline and a cross-tenant attempt, then print each tenant's ledger check, its
audit chain verdict and the emails received (when the system has a mail resource)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
from rich.table import Table

from stackwright.local.demokit import DemoContext, bearer

SIZE_HELP = "payments per tenant"
DEFAULT_SIZE = 60


async def run(ctx: DemoContext) -> bool:
    base = ctx.state["gateway"]
    idp = ctx.idp()
    admin = bearer(idp.mint("demo-ops", ["platform-admin"]))
    ok = True
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        tenants: list[str] = []
        for i in range(3):
            r = await client.post("/tenants", json={"name": f"demo-{i}-{uuid.uuid4().hex[:6]}",
                                                    "email": f"ops{i}@example.com"}, headers=admin)
            if r.status_code != 201:
                ctx.console.print(f"onboarding failed: {r.status_code} {r.text}")
                return False
            tenants.append(r.json()["id"])
            ctx.console.print(f"tenant {r.json()['id']} onboarded: {r.json()['status']}")
        table = Table(title="payments per tenant")
        for col in ("tenant", "payments", "duplicates replayed", "settled", "rejected", "declined", "held",
                    "ledger balanced", "audit chain"):
            table.add_column(col)
        cross_ok = True
        for tenant in tenants:
            h = bearer(idp.mint("demo-user", [], extra={"tenant_id": tenant}))
            accts = []
            for j in range(4):
                r = await client.post("/accounts", json={"name": f"customer {j}", "currency": "USD",
                                                         "opening_balance": 50_000, "email": f"c{j}@{tenant}.example"},
                                      headers=h)
                accts.append(r.json()["id"])
            rng = random.Random(tenant)
            sends = []
            for _ in range(ctx.size):
                src, dst = rng.sample(accts, 2)
                key = uuid.uuid4().hex
                body = {"from_account": src, "to_account": dst, "amount": rng.randint(100, 20_000), "currency": "USD"}
                sends.append((key, body))
                if rng.random() < 0.2:  # a client retry of the same request
                    sends.append((key, body))
            sends.append((uuid.uuid4().hex, {"from_account": accts[0], "to_account": accts[1], "amount": 5_000_000,
                                             "currency": "USD"}))  # over the fraud limit
            sem = asyncio.Semaphore(ctx.concurrency)

            async def pay(key: str, body: dict[str, Any], h: dict[str, str] = h,
                          sem: asyncio.Semaphore = sem) -> httpx.Response:
                async with sem:
                    return await client.post("/payments", json=body, headers={**h, "Idempotency-Key": key})

            answers = await asyncio.gather(*(pay(k, b) for k, b in sends))
            replayed = sum(1 for a in answers if a.headers.get("idempotent-replayed") == "true")
            statuses = [a.json().get("status") for a in answers if a.status_code == 201
                        and a.headers.get("idempotent-replayed") != "true"]
            # Another tenant's token against this tenant's account: must fail.
            other = tenants[(tenants.index(tenant) + 1) % 3]
            cross = await client.get(f"/accounts/{accts[0]}",
                                     headers=bearer(idp.mint("x", [], extra={"tenant_id": other})))
            cross_ok &= cross.status_code == 404
            check = (await client.get("/ledger/check", headers=h)).json()
            await asyncio.sleep(1.0)  # audit consumes the events asynchronously
            audit = (await client.get("/audit/verify", headers=h)).json()
            ok &= check["balanced"] and audit["ok"] and "declined" in statuses
            table.add_row(tenant, str(len(sends)), str(replayed), str(statuses.count("settled")),
                          str(statuses.count("rejected")), str(statuses.count("declined")),
                          str(statuses.count("held")),
                          _ledger_cell(check),
                          f"{'verified' if audit['ok'] else 'BROKEN'} ({audit['entries']} entries)")
        ctx.console.print(table)
        ctx.console.print(f"cross-tenant read of another tenant's account refused: {cross_ok}")
        ok &= cross_ok
    from stackwright.local.mailbox import read_mailbox

    state_root = ctx.key_file.parent.parent  # <state root>/<system>/idp-key.pem
    mails = read_mailbox(state_root, ctx.system.name)
    ctx.console.print(f"emails received by the local SMTP server: {len(mails)}")
    for m in mails[-5:]:
        ctx.console.print(f"  to {m['To']}: {m['Subject']}")
    ok &= len(mails) > 0
    return ok


def _ledger_cell(check: dict[str, Any]) -> str:
    """``/ledger/check``'s answer for a person: "yes (USD sums to 0)" rather than a Python dict."""
    sums = ", ".join(f"{currency} sums to {total:,}" for currency, total in sorted(check["currencies"].items()))
    return f"{'yes' if check['balanced'] else 'NO'} ({sums or 'no entries'})"
