"""Fault drills for the voting system (seed 000): its ``drills.py`` plug-in, run by ``stackwright chaos voting``.

For each fault a fresh poll is opened and distinct viewers vote at a steady rate (open loop) through the
gateway; a couple of seconds in, the process is killed with SIGKILL and the supervisor brings it back. When
every fault has run, the drill waits for the queue to drain and checks, per fault, that every vote that got
a 202 is in Postgres exactly once (by vote id), that Redis totals equal the Postgres counts, and that the
results API agrees. A poison-message drill checks dead-lettering after ``max_receive_count`` deliveries and
redrive.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from stackwright.local.chaos import ChaosError, DrillRow, FlowDrill, Outcome, Recovery
from stackwright.local.demokit import Client, bearer, idp_for
from stackwright.local.region_outage import present_ids
from stackwright.runtime.queue import queue_from_url
from stackwright.spec import System

OPTIONS = ["A", "B", "C"]


@dataclass
class Phase:
    """One fault while votes flow: its poll, what the clients saw, and how the process came back."""

    fault: str
    poll_id: str
    outcomes: list[Outcome] = field(default_factory=list)
    recovery: Recovery | None = None
    error: str | None = None

    def acked(self) -> dict[str, str]:
        """vote_id -> viewer for every 202."""
        return {o.body["vote_id"]: f"{self.poll_id}:{o.index}" for o in self.outcomes
                if o.status == 202 and isinstance(o.body, dict) and "vote_id" in o.body}

    def acked_after_kill(self) -> list[str]:
        if self.recovery is None:
            return []
        return [o.body["vote_id"] for o in self.outcomes if o.status == 202 and isinstance(o.body, dict)
                and o.sent_at >= self.recovery.killed_at]


class Drill(FlowDrill):
    """The voting drills against a running copy of the system (``state`` from ``start_detached``)."""

    FAULTS = ("worker", "vote", "redis", "postgres")

    def __init__(self, system: System, state: dict[str, Any], state_root: Path | None, **timings: Any) -> None:
        super().__init__(system, state, state_root, **timings)
        self.cache_url = state["resources"]["cache"]
        self.queue_url = state["resources"]["votes"]
        self.queue_name = f"{system.name}-votes"
        self.max_receive = system.resources["votes"].max_receive_count
        self.admin = bearer(self.idp.mint("chaos-admin", ["admin"], ttl_s=3600))
        self.phases: list[Phase] = []

    # ------------------------------------------------------------------------------------------ helpers

    async def _db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.db_url, timeout=3)

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        conn = await self._db()
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def new_poll(self, client: Client, title: str) -> str:
        """Create and open a poll (retrying while the system settles after the previous fault)."""
        last: Any = None
        for _ in range(60):
            created = await client.post("/polls", json={"title": title, "options": OPTIONS}, headers=self.admin)
            if created.status == 201:
                opened = await client.post(f"/polls/{created.body['id']}/open", headers=self.admin)
                if opened.status == 200:
                    return str(created.body["id"])
                last = opened
            else:
                last = created
            await asyncio.sleep(0.5)
        raise ChaosError(f"could not open a poll: {last.status if last else '?'} {last.body if last else ''}")

    # ------------------------------------------------------------------------------------------ faults

    async def run_fault(self, client: Client, fault: str, rate: float, report: Callable[[str], None]) -> Phase:
        """Votes flow at ``rate``; kill -9 ``fault`` after the warm-up; keep voting until it is back."""
        poll_id = await self.new_poll(client, f"chaos {self.run_id} {fault}")
        phase = Phase(fault, poll_id)
        url = f"/polls/{poll_id}/votes"

        async def vote(i: int) -> tuple[int, Any]:
            token = self.idp.mint(f"chaos-{self.run_id}-{fault}-{i}", ["viewer"], ttl_s=600)
            reply = await client.post(url, json={"option": OPTIONS[i % len(OPTIONS)]}, headers=bearer(token))
            return reply.status, reply.body

        await self.flow_and_kill(phase, fault, rate, vote, report)
        return phase

    async def wait_for_flow(self, phase: Phase) -> None:
        """Until a vote sent after the kill has been acknowledged and counted (or the time is up)."""
        deadline = time.monotonic() + self.recover_timeout_s
        while time.monotonic() < deadline:
            ids = phase.acked_after_kill()
            if ids:
                try:
                    rows = await self._fetch("SELECT 1 FROM votes WHERE vote_id = ANY($1::uuid[]) LIMIT 1", ids)
                    if rows:
                        return
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pass
            await asyncio.sleep(0.1)
        raise ChaosError(f"no vote sent after killing {phase.fault} was counted within {self.recover_timeout_s:.0f}s")

    # ------------------------------------------------------------------------------------------ checks

    async def wait_drained(self) -> None:
        """Until every acknowledged vote is in Postgres and the queue is empty (or the time is up)."""
        acked = [vid for p in self.phases for vid in p.acked()]
        q = queue_from_url(self.queue_url, self.queue_name)
        deadline = time.monotonic() + self.drain_timeout_s
        try:
            while time.monotonic() < deadline:
                try:
                    stored = await self._fetch("SELECT count(*) AS n FROM votes WHERE vote_id = ANY($1::uuid[])",
                                               acked)
                    if stored[0]["n"] >= len(acked) and await q.depth() == 0:
                        break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pass
                await asyncio.sleep(0.25)
        finally:
            await q.close()
        # The Redis aggregates follow the Postgres insert by one script call; give them a moment.
        settle = time.monotonic() + 10
        while time.monotonic() < settle:
            if all([(await self._aggregates(p.poll_id))[0] for p in self.phases]):
                return
            await asyncio.sleep(0.25)

    async def _aggregates(self, poll_id: str) -> tuple[bool, dict[str, int], dict[str, int]]:
        """(Redis totals == Postgres counts, redis totals, postgres counts) for one poll."""
        rows = await self._fetch("SELECT option, count(*) AS n FROM votes WHERE poll_id = $1 GROUP BY option",
                                 uuid.UUID(poll_id))
        pg = {r["option"]: int(r["n"]) for r in rows}
        client = aioredis.from_url(self.cache_url, decode_responses=True)
        try:
            cached = {k: int(v) for k, v in (await client.hgetall(f"totals:{poll_id}")).items() if int(v)}
        finally:
            await client.aclose()
        return cached == pg, cached, pg

    async def verify(self, client: Client) -> list[DrillRow]:
        """One table row per fault: acknowledged, counted once, lost, duplicated, recovery times."""
        dlq = queue_from_url(self.queue_url, self.queue_name)
        try:
            dead = {m.body.get("vote_id") for m in await dlq.dlq_messages(limit=10_000)}
        finally:
            await dlq.close()
        rows: list[DrillRow] = []
        for phase in self.phases:
            acked = phase.acked()
            stored = await self._fetch("SELECT vote_id::text AS vote_id, user_id, counted_at FROM votes "
                                       "WHERE poll_id = $1", uuid.UUID(phase.poll_id))
            by_vote = Counter(r["vote_id"] for r in stored)
            by_user = Counter(r["user_id"] for r in stored)
            same, cached, pg = await self._aggregates(phase.poll_id)
            api = await client.get(f"/polls/{phase.poll_id}/results")
            api_totals = {k: v for k, v in (api.body or {}).get("totals", {}).items() if v}
            counted_ids = set(by_vote)
            row = DrillRow(fault=phase.fault, acknowledged=len(acked))
            row.counted = len(set(acked) & counted_ids)
            row.lost = len(acked) - row.counted
            row.duplicated = (sum(n - 1 for n in by_vote.values()) + sum(n - 1 for n in by_user.values())
                              + max(0, sum(cached.values()) - len(stored)))
            row.extra = len(counted_ids - set(acked))
            failures = Counter(str(o.status or o.error) for o in phase.outcomes if o.status != 202)
            row.failed = sum(failures.values())
            row.aggregates_ok = same and api.status == 200 and api_totals == pg
            if phase.recovery is not None:
                row.respawned_s, row.ready_s = phase.recovery.respawned_s, phase.recovery.ready_s
                killed = phase.recovery.killed_at
                after = {o.body["vote_id"] for o in phase.outcomes if o.status == 202 and o.sent_at >= killed}
                times = [r["counted_at"].timestamp() for r in stored if r["vote_id"] in after]
                row.flow_s = max(0.0, min(times) - killed) if times else None
            notes = []
            if failures:
                notes.append("errors: " + ", ".join(f"{k} x{n}" for k, n in sorted(failures.items())))
            if row.extra:
                notes.append(f"{row.extra} counted whose 202 never reached the client")
            in_dlq = len(set(acked) & dead)
            if in_dlq:
                notes.append(f"{in_dlq} acknowledged votes are in the DLQ")
            if not row.aggregates_ok:
                notes.append(f"redis {cached} vs postgres {pg} vs api {api_totals}")
            if phase.error:
                notes.append(phase.error)
                row.aggregates_ok = False
            row.note = "; ".join(notes)
            rows.append(row)
        return rows

    async def run(self, faults: list[str], *, rate: float = 40.0,
                  report: Callable[[str], None] = print) -> list[DrillRow]:
        """Run the faults in turn while votes flow, wait for the queue to drain, and check every vote."""
        self.check_faults(faults)
        async with Client(self.base, concurrency=256, timeout_s=15) as client:
            for fault in faults:
                await self.run_fault(client, fault, rate, report)
            report("waiting for the queue to drain …")
            await self.wait_drained()
            return await self.verify(client)

    # ------------------------------------------------------------------------------------------ poison

    async def poison(self, report: Callable[[str], None] = print, *, redrive: bool = True,
                     timeout_s: float = 90.0) -> dict[str, Any]:
        """Poison messages land in the DLQ after ``max_receive_count`` deliveries; fixed ones redrive.

        Two poison messages go on the votes queue: a vote for a poll that does not exist (a foreign-key
        failure on every delivery) and a body without the vote fields. Once both are dead-lettered, the
        missing poll is created (the operator's fix) and the DLQ is redriven: that vote is then counted.
        """
        q = queue_from_url(self.queue_url, self.queue_name)
        poll_id = str(uuid.uuid4())
        now = time.time()
        missing_poll = {"vote_id": str(uuid.uuid4()), "poll_id": poll_id, "user_id": f"chaos-poison-{self.run_id}",
                        "option": "A", "accepted_at": now, "sent_at": now}
        malformed = {"chaos": "malformed", "run": self.run_id}
        result: dict[str, Any] = {"max_receive_count": self.max_receive}
        try:
            began = time.monotonic()
            await q.send(missing_poll)
            await q.send(malformed)
            report("sent 2 poison messages; waiting for the DLQ …")
            found: dict[str, Any] = {}
            deadline = began + timeout_s
            while time.monotonic() < deadline and len(found) < 2:
                for m in await q.dlq_messages(limit=10_000):
                    if m.body.get("vote_id") == missing_poll["vote_id"]:
                        found.setdefault("missing_poll", m)
                    elif m.body == malformed:
                        found.setdefault("malformed", m)
                await asyncio.sleep(0.2)
            result["dead_lettered_s"] = time.monotonic() - began
            result["dead_lettered"] = {k: m.receive_count for k, m in found.items()}
            if len(found) < 2:
                raise ChaosError(f"poison messages not dead-lettered within {timeout_s:.0f}s "
                                 f"(found: {sorted(found)})")
            report(f"  both dead-lettered after {result['dead_lettered_s']:.1f}s, receive counts "
                   f"{result['dead_lettered']}")
            if redrive:
                conn = await self._db()
                try:
                    await conn.execute("INSERT INTO polls (id, title, options, status, created_by) "
                                       "VALUES ($1, $2, $3, 'open', 'chaos')", uuid.UUID(poll_id),
                                       f"chaos {self.run_id} poison", OPTIONS)
                finally:
                    await conn.close()
                result["redriven"] = await q.redrive()
                began = time.monotonic()
                counted = False
                while time.monotonic() < began + timeout_s and not counted:
                    counted = bool(await self._fetch("SELECT 1 FROM votes WHERE vote_id = $1",
                                                     uuid.UUID(missing_poll["vote_id"])))
                    await asyncio.sleep(0.2)
                result["counted_after_redrive"] = counted
                result["counted_after_s"] = time.monotonic() - began
                report(f"  created the missing poll and redrove {result['redriven']} message(s): the vote was "
                       f"{'counted' if counted else '[red]NOT counted'}")
        finally:
            await q.close()
        result["ok"] = (all(n == self.max_receive for n in result["dead_lettered"].values())
                        and (not redrive or result.get("counted_after_redrive", False)))
        return result


class RegionLoad:
    """The writes of ``stackwright drill region-failover voting``: poll creation (``POST /polls``), answered
    201 only once the row is committed in the primary's Postgres, so a 201 is an acknowledged durable write.
    (A vote's 202 acknowledges a message in the region's queue, which a region loss takes with it: the
    database's RPO is the poll's.)"""

    RATE = 20.0

    def __init__(self, system: System, key_file: Path) -> None:
        idp = idp_for(system, key_file)
        # A few admins: the admin rate limit is per subject (50/s), the drill's rate stays well below it.
        self.admins = [bearer(idp.mint(f"region-drill-{n}", ["admin"], ttl_s=3600)) for n in range(4)]
        self.database = system.resources["db"].database

    async def setup(self, client: httpx.AsyncClient) -> None:
        """Nothing to prepare: each write is a new poll."""

    async def write(self, client: httpx.AsyncClient, i: int) -> str | None:
        """Create poll ``i``; its id when created (201), None otherwise."""
        resp = await client.post("/polls", json={"title": f"region drill {i}", "options": OPTIONS},
                                 headers=self.admins[i % len(self.admins)])
        return str(resp.json()["id"]) if resp.status_code == 201 else None

    async def read(self, client: httpx.AsyncClient, key: str) -> bool:
        """Whether the region the client reaches serves poll ``key`` (``GET /polls/{id}``: the results service,
        which reads its region's replica); used by ``stackwright drill region-partition voting``."""
        return (await client.get(f"/polls/{key}")).status_code == 200

    async def present(self, server_url: str, keys: list[str]) -> set[str]:
        """The poll ids among ``keys`` in the voting database of the server at ``server_url``."""
        return await present_ids(server_url, self.database, "SELECT id FROM polls WHERE id = ANY($1::uuid[])", keys)
