"""``stackwright bench payments``: committed payments per second against pgbench TPC-B on the same Postgres.

Order, in one run on one machine (the system comes up with a fresh data directory first):

1. **pgbench** — the TPC-B-like built-in script of ``pgbench`` (the binary next to the ``postgres`` the
   system runs on) against a ``pgbench`` database of scale ``PGBENCH_SCALE`` on the system's own server,
   with the services idle: the maximum transactions per second with ``PGBENCH_CLIENTS`` clients, then a
   rate-limited run (``-R``) at 50% of it with every transaction logged, for p50/p99 from the scheduled
   start. That is the ceiling of a simple transfer (three UPDATEs, a SELECT, an INSERT) on this server.
2. **tenants_1**, **tenants_10**, **tenants_100** — ``POST /payments`` through the edge gateway (JWT
   check, rate limit), spread round robin over 1, 10 and 100 onboarded tenants (each with its own
   database, role and pools), between accounts with large balances and small amounts that fraud approves.
   Every request has a fresh ``Idempotency-Key``; the full path is payment -> fraud -> transaction (the
   ledger) -> payment-events (notification, audit). The maximum sustainable rate is searched, then latency
   recorded at 50% and 90% of it (:meth:`SystemBench._measure`). While a scenario runs, Postgres'
   connections are sampled (``pg_stat_activity``) for the peak; afterwards every tenant's payments are
   counted by status and its ledger checked (entries sum to zero, balances equal their entries).
3. **overload_100** — after a warm-up at 50% (not reported), the 100 tenants at 50% of the capacity
   ``tenants_100`` found (``OVERLOAD_CAPACITY`` when it did not run), then ``OVERLOAD_FACTOR`` x the capacity
   for ``OVERLOAD_S`` seconds, then twice 50% again with no pause in between: whether the system serves what
   it can during the overload, sheds the rest, and recovers (p99, errors and CPU per payment back to the first
   step's) once the load drops. Each step also counts the tenant databases' connection opens and commits
   (``pg_stat_database``) per payment.

Recovery pause: in the searches (not in overload_100, which measures recovery itself), a step that broke is
followed by a pause until the processes together use < 10% of a core over a second, at most ``RECOVER_S``
(30 s): the payments still in flight and the events still queued from an overloaded step are done before the
next step starts, so one overload step cannot spoil the steps after it. Each pause is printed and listed in
the run's notes.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from stackwright.bench.harness import BenchOptions, Reporter, SystemBench
from stackwright.bench.loadgen import RequestSource
from stackwright.bench.sources import KeyedRequests
from stackwright.bench.stats import percentile

SCENARIOS = ("pgbench", "tenants_1", "tenants_10", "tenants_100", "overload_100")
TENANT_COUNTS = {"tenants_1": 1, "tenants_10": 10, "tenants_100": 100}
PGBENCH_SCALE = 10  # 10 branches, 1,000,000 accounts (~160 MB)
PGBENCH_CLIENTS = 10
PGBENCH_SECONDS = 15
#: Payers per tenant: fraud's velocity rule reviews a payer's 600th payment in 60 s, so the load is spread
#: over enough payers that none comes near it at the rates this machine reaches (~60 s x 400/s / 600 / T).
PAYERS_FOR_ONE_TENANT = 40
MIN_PAYERS = 4
#: Senders per tenant (distinct token subjects): the edge limits each to 200 requests/s.
SENDERS = 8
#: overload_100: the capacity assumed when tenants_100 did not run in the same run, payments/s; the overload
#: factor and how long it lasts, s; the 50% steps around it, s.
OVERLOAD_CAPACITY = 60.0
OVERLOAD_FACTOR = 2.0
OVERLOAD_S = 10.0
OVERLOAD_STEP_S = 8.0
OPENING_BALANCE = 10**12  # minor units: no payer runs dry in a run
MAX_AMOUNT = 5_000  # under FRAUD_NEW_PAYEE_OVER (50,000) and FRAUD_REVIEW_OVER: fraud approves


def run(spec_path: Path, options: BenchOptions, reporter: Reporter) -> dict[str, Any]:
    """The plug-in entry point: one benchmark run of the payments system, as a results document."""
    return PaymentsBench(spec_path, options, reporter).run()


def payment_bodies(accounts: list[str]) -> list[bytes]:
    """One tenant's payment bodies: payer ``k`` pays the next account, amounts 1..MAX_AMOUNT minor units."""
    return [json.dumps({"from_account": a, "to_account": accounts[(k + 1) % len(accounts)],
                        "amount": 1 + (k * 977) % MAX_AMOUNT, "currency": "USD"}, separators=(",", ":")).encode()
            for k, a in enumerate(accounts)]


class ConnectionSampler:
    """Samples ``count(*) FROM pg_stat_activity`` (client backends) every ``every_s`` in a thread; ``peak``."""

    def __init__(self, url: str, every_s: float = 0.25) -> None:
        self.url = url
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            while not self._stop.is_set():
                n = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                self.peak = max(self.peak, int(n))
                await asyncio.sleep(self.every_s)
        finally:
            await conn.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class PaymentsBench(SystemBench):
    """The payments scenarios: pgbench on the system's Postgres, then payments at 1, 10 and 100 tenants."""

    SCENARIOS = SCENARIOS
    RECOVER_S = 30.0
    ADMIN_ROLES = ("platform-admin",)
    CLIENTS = (f"per tenant {SENDERS} dev tokens carrying its tenant_id claim (the edge limits each subject to "
               "200/s); a fresh Idempotency-Key per payment")

    def __init__(self, spec_path: Path, options: BenchOptions, reporter: Reporter | None = None) -> None:
        options.users = min(options.users, 100)  # the generic client tokens carry no tenant: barely used
        super().__init__(spec_path, options, reporter)
        self.cursor: dict[str, int] = {}
        self.tenants: list[dict[str, Any]] = []  # {"id", "tokens", "accounts"}

    def baseline_source(self) -> RequestSource:
        raise NotImplementedError("the payments bench's baseline is pgbench on the same Postgres")

    def _reserve(self, source: str, count: int) -> int:
        base = self.cursor.get(source, 0)
        self.cursor[source] = base + count
        return base

    @property
    def admin_url(self) -> str:
        return str(self.state["resources"]["db"])

    def scenarios(self) -> None:
        self.max_connections = int(asyncio.run(_fetchval(self.admin_url, "SHOW max_connections")))
        if "pgbench" in self.opt.only:
            self.results["pgbench"] = self._pgbench()
        for name, count in TENANT_COUNTS.items():
            if name in self.opt.only:
                self.results[name] = self._payments(name, count)
        if "overload_100" in self.opt.only:
            self.results["overload_100"] = self._overload()

    # ------------------------------------------------------------------ pgbench

    def _pgbench(self) -> dict[str, Any]:
        from stackwright.local.backing.postgres import bin_dir

        binary = shutil.which("pgbench", path=str(bin_dir())) or "pgbench"
        url = _with_database(self.admin_url, "pgbench")
        asyncio.run(_execute(self.admin_url, "CREATE DATABASE pgbench"))
        self.say.phase(f"pgbench: initialising scale {PGBENCH_SCALE}")
        subprocess.run([binary, "-i", "-q", "-s", str(PGBENCH_SCALE), url], check=True, capture_output=True)
        self.say.phase(f"pgbench: TPC-B-like, {PGBENCH_CLIENTS} clients, {PGBENCH_SECONDS} s, services idle")
        full = subprocess.run([binary, "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(PGBENCH_SECONDS), url],
                              check=True, capture_output=True, text=True).stdout
        tps = float(re.search(r"tps = ([\d.]+)", full).group(1))  # type: ignore[union-attr]
        rate = max(1, round(tps / 2))
        self.say.phase(f"pgbench: {rate} tps (-R, 50% of {tps:.0f}), every transaction logged")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([binary, "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(PGBENCH_SECONDS), "-R", str(rate),
                            "-l", f"--log-prefix={tmp}/pgbench", url], check=True, capture_output=True, text=True)
            # Per transaction: client, no, latency us, script, epoch s, epoch us, schedule lag us (with -R).
            lat = sorted((int(f[2]) + int(f[6])) / 1000 for p in Path(tmp).glob("pgbench*")
                         for f in (line.split() for line in p.read_text().splitlines()) if len(f) >= 7)
        return {"scale": PGBENCH_SCALE, "clients": PGBENCH_CLIENTS, "seconds": PGBENCH_SECONDS,
                "max_tps": round(tps, 1),
                "at_50%": {"rate": rate, "transactions": len(lat),
                           "latency_ms": {q: round(percentile(lat, float(q[1:])), 2)
                                          for q in ("p50", "p99")} if lat else {}},
                "script": "built-in tpcb-like (UPDATE account, SELECT balance, UPDATE teller, UPDATE branch, "
                          "INSERT history, in one transaction)"}

    # ------------------------------------------------------------------ payments

    def _onboard(self, count: int) -> None:
        """Onboard tenants until there are ``count``, each with its payers (accounts) and sender tokens."""
        missing = count - len(self.tenants)
        if missing <= 0:
            return
        self.say.phase(f"onboarding {missing} tenant(s) with accounts")
        idp = self._idp()
        payers = max(MIN_PAYERS, math.ceil(PAYERS_FOR_ONE_TENANT / count))

        async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore) -> dict[str, Any]:
            async with gate:
                r = await client.post("/tenants", json={"name": f"bench-{uuid.uuid4().hex[:10]}",
                                                        "email": "bench@example.com"},
                                      headers={"authorization": f"Bearer {self.admin}"})
                r.raise_for_status()
                tenant = r.json()["id"]
                tokens = [idp.mint(f"bench-{tenant}-{k}", [], extra={"tenant_id": tenant}, ttl_s=86400)
                          for k in range(SENDERS)]
                accounts = []
                for k in range(payers):
                    a = await client.post("/accounts", json={"name": f"payer {k}", "currency": "USD",
                                                             "opening_balance": OPENING_BALANCE},
                                          headers={"authorization": f"Bearer {tokens[k % SENDERS]}"})
                    a.raise_for_status()
                    accounts.append(a.json()["id"])
                return {"id": tenant, "tokens": tokens, "accounts": accounts}

        async def all_of_them() -> list[dict[str, Any]]:
            gate = asyncio.Semaphore(4)
            async with httpx.AsyncClient(base_url=self.state["gateway"], timeout=120) as client:
                return list(await asyncio.gather(*(one(client, gate) for _ in range(missing))))

        began = time.monotonic()
        self.tenants += asyncio.run(all_of_them())
        self.notes.append(f"onboarded {missing} tenant(s) ({payers} payers each) in {time.monotonic() - began:.0f} s")

    def _payments(self, name: str, count: int) -> dict[str, Any]:
        self._onboard(count)
        chosen = self.tenants[:count]
        # Request i: tenant i % T, a fresh Idempotency-Key each (the harness hands out fresh index ranges).
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.gen_add(name, KeyedRequests("/payments", [t["tokens"] for t in chosen],
                                         [payment_bodies(t["accounts"]) for t in chosen], tag=tag))
        host, port = self._url("edge")
        groups = self._groups("gateway", "payment", "fraud", "transaction", "audit", "notification", "postgres",
                              "redis")
        with ConnectionSampler(self.admin_url) as sampler:
            out = self._measure(name, name, host, port, groups, start=20)
        out["target"] = f"POST /payments through the edge, round robin over {count} tenant(s)"
        out["tenants"] = count
        out["peak_connections"] = sampler.peak
        out["max_connections"] = self.max_connections
        out["outcome"] = asyncio.run(_tally(self.admin_url, [t["id"] for t in chosen], tag))
        return out


    def _overload(self) -> dict[str, Any]:
        """50% of capacity, an overload, then 50% twice (no recovery pause): per step what was served, its
        latency, errors, CPU and connection opens per payment, and whether the last step is back to the first."""
        self._onboard(100)
        chosen = self.tenants[:100]
        capacity = float((self.results.get("tenants_100") or {}).get("max_rps") or OVERLOAD_CAPACITY)
        tag = f"overload-{uuid.uuid4().hex[:6]}"
        self.gen_add("overload_100", KeyedRequests("/payments", [t["tokens"] for t in chosen],
                                                   [payment_bodies(t["accounts"]) for t in chosen], tag=tag))
        host, port = self._url("edge")
        groups = self._groups("gateway", "payment", "fraud", "transaction", "audit", "notification", "postgres",
                              "redis")
        plan = [("warm-up at 50%", 0.5, OVERLOAD_STEP_S / 2), ("50% before", 0.5, OVERLOAD_STEP_S),
                (f"{OVERLOAD_FACTOR:g}x overload", OVERLOAD_FACTOR, OVERLOAD_S),
                ("50% after", 0.5, OVERLOAD_STEP_S), ("50% after, again", 0.5, OVERLOAD_STEP_S)]
        steps = []
        for label, share, seconds in plan:
            before = asyncio.run(_tenant_counters(self.admin_url))
            # No recovery pause: this scenario measures the recovery itself.
            step = self._step("overload_100", label, "overload_100", host, port, round(capacity * share), seconds,
                              groups, recover=False)
            after = asyncio.run(_tenant_counters(self.admin_url))
            done = max(step.completed, 1)
            steps.append({"label": label, **step.to_dict(),
                          "connection_opens_per_payment": round((after[0] - before[0]) / done, 3),
                          "commits_per_payment": round((after[1] - before[1]) / done, 2)})
            cpu = step.cpu_ms_per_request
            self.say.phase(f"overload_100: {label}: {after[0] - before[0]} tenant connections opened, "
                           f"{after[1] - before[1]} commits, {step.completed} answered, CPU ms per payment "
                           f"{sum(cpu.values()):.1f} ({cpu.get('payment', 0):.1f} in payment)")
        warm_up, steps = steps[0], steps[1:]  # the warm-up (100 tenants' pools after onboarding) is not compared
        first, last = steps[0], steps[-1]

        def total(step: dict[str, Any]) -> float:
            return sum((step.get("cpu_ms_per_request") or {}).values())

        recovered = (last["latency_ms"].get("p99", math.inf) <= self.criteria.max_p99_ms
                     and last["ok"] == last["sent"] and total(last) <= 1.25 * total(first))
        return {"target": "POST /payments through the edge, round robin over 100 tenants: 50%, overload, 50%",
                "capacity_rps": capacity, "warm_up": warm_up, "steps": steps, "recovered": recovered,
                "outcome": asyncio.run(_tally(self.admin_url, [t["id"] for t in chosen], tag))}


async def _tenant_counters(admin_url: str) -> tuple[int, int]:
    """(connections opened, transactions committed) so far over the tenant databases (pg_stat_database)."""
    conn = await asyncpg.connect(admin_url)
    try:
        row = await conn.fetchrow("SELECT coalesce(sum(sessions), 0), coalesce(sum(xact_commit), 0) "
                                  "FROM pg_stat_database WHERE datname LIKE 'tenant\\_%'")
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def _fetchval(url: str, query: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def _execute(url: str, query: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(query)
    finally:
        await conn.close()


def _with_database(url: str, database: str) -> str:
    from stackwright.runtime.db import database_url

    return database_url(url, database)


async def _tally(admin_url: str, tenants: list[str], tag: str) -> dict[str, Any]:
    """This scenario's payments (keys ``<tag>-*``) by status over the tenants' databases, and whether every
    tenant's whole ledger balances."""
    statuses: dict[str, int] = {}
    unbalanced = []
    for tenant in tenants:
        conn = await asyncpg.connect(_with_database(admin_url, f"tenant_{tenant}"))
        try:
            for r in await conn.fetch("SELECT status, count(*) AS n FROM payments WHERE idempotency_key LIKE $1 "
                                      "GROUP BY status", f"{tag}-%"):
                statuses[r["status"]] = statuses.get(r["status"], 0) + r["n"]
            off = await conn.fetchval(
                "SELECT (SELECT count(*) FROM (SELECT currency FROM entries GROUP BY currency "
                "HAVING sum(amount) <> 0) c) + (SELECT count(*) FROM (SELECT a.id FROM accounts a LEFT JOIN entries e "
                "ON e.account_id = a.id GROUP BY a.id, a.balance HAVING a.balance <> coalesce(sum(e.amount), 0)) m)")
            if off:
                unbalanced.append(tenant)
        finally:
            await conn.close()
    return {"payments_by_status": statuses, "ledgers_balanced": not unbalanced, "unbalanced_tenants": unbalanced}


# ---------------------------------------------------------------------- reporting


def _committed(sc: dict[str, Any]) -> float:
    """Max sustained payments/s scaled by the share of them that settled (posted to the ledger)."""
    by = (sc.get("outcome") or {}).get("payments_by_status") or {}
    total = sum(by.values())
    return (sc.get("max_rps") or 0) * (by.get("settled", 0) / total if total else 0)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, measured."""
    sc = doc["scenarios"]
    rows: list[dict[str, Any]] = []
    pg = sc.get("pgbench")
    one = sc.get("tenants_1")
    if pg and one:
        c = _committed(one)
        rows.append({"target": "committed payments/s (1 tenant) >= 0.3 x pgbench TPC-B tps",
                     "measured": f"{c:,.0f}/s vs {pg['max_tps']:,.0f} tps = {c / pg['max_tps']:.2f}x",
                     "met": c >= 0.3 * pg["max_tps"]})
    for name in TENANT_COUNTS:
        s = sc.get(name)
        if not s:
            continue
        p99 = ((s.get("points") or {}).get("50%") or {}).get("latency_ms", {}).get("p99")
        rows.append({"target": f"{name}: p99 <= 500 ms at 50% of max", "measured": f"{p99:,.1f} ms" if p99 else "-",
                     "met": p99 is not None and p99 <= 500})
        rows.append({"target": f"{name}: peak Postgres connections < max_connections",
                     "measured": f"{s['peak_connections']} of {s['max_connections']}",
                     "met": s["peak_connections"] < s["max_connections"]})
        rows.append({"target": f"{name}: every tenant's ledger balanced after the run",
                     "measured": str(s["outcome"]["payments_by_status"]), "met": s["outcome"]["ledgers_balanced"]})
    over = sc.get("overload_100")
    if over:
        last = over["steps"][-1]
        rows.append({"target": "overload_100: back to p99 <= 500 ms, no errors and the CPU per payment of before",
                     "measured": f"last 50% step: p99 {last['latency_ms'].get('p99', '-')} ms, "
                                 f"errors {last['error_rate']:.2%}", "met": over["recovered"]})
    hundred = sc.get("tenants_100")
    if one and hundred:
        a, b = _committed(one), _committed(hundred)
        rows.append({"target": "throughput at 100 tenants >= 0.8 x at 1 tenant",
                     "measured": f"{b:,.0f} vs {a:,.0f}/s = {b / a:.2f}x" if a else "-",
                     "met": bool(a) and b >= 0.8 * a})
    return rows


def markdown(doc: dict[str, Any]) -> list[str]:
    """The pgbench line and the per-tenant-count table (committed share, connections) in RESULTS.md."""
    sc = doc["scenarios"]
    lines: list[str] = []
    pg = sc.get("pgbench")
    if pg:
        at = pg["at_50%"]
        lines += ["", f"**pgbench** (same Postgres, services idle; {pg['script']}; scale {pg['scale']}, "
                      f"{pg['clients']} clients, {pg['seconds']} s): max {pg['max_tps']:,.0f} tps; at 50% "
                      f"({at['rate']} tps, -R) p50 {at['latency_ms'].get('p50')} ms, p99 "
                      f"{at['latency_ms'].get('p99')} ms from the scheduled start."]
    rows = [(n, sc[n]) for n in TENANT_COUNTS if n in sc]
    if rows:
        lines += ["", "| tenants | max payments/s | settled share | committed/s | x pgbench | p50 / p99 ms @ 50% "
                      "| peak connections / max | ledgers balanced |", "|---:|---:|---:|---:|---:|---|---|---|"]
        for _, s in rows:
            by = s["outcome"]["payments_by_status"]
            total = sum(by.values())
            lat = ((s.get("points") or {}).get("50%") or {}).get("latency_ms") or {}
            ratio = f"{_committed(s) / pg['max_tps']:.2f}" if pg else "-"
            lines.append(f"| {s['tenants']} | {s.get('max_rps') or 0:,.0f} | "
                         f"{by.get('settled', 0) / total if total else 0:.3f} | {_committed(s):,.0f} | {ratio} | "
                         f"{lat.get('p50', '-')} / {lat.get('p99', '-')} | {s['peak_connections']} / "
                         f"{s['max_connections']} | {s['outcome']['ledgers_balanced']} |")
    return lines
