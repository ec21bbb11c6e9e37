"""Fault drills on a private copy of the voting system (short queue visibility timeout so redeliveries
and dead-lettering take seconds): kill -9 each process while votes flow, poison messages, DLQ redrive.

Slow (about a minute and a half): marked ``chaos`` and run by CI as its own pytest invocation.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from rich.console import Console
from tests.helpers import system_up

from stackwright.local.chaos import DRILL_VISIBILITY_TIMEOUT_S, drill_up_args, render_table
from stackwright.local.state import read_state
from stackwright.plugins import load_plugin
from stackwright.runtime.queue import queue_from_url
from stackwright.spec import System, load_system

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"
REPO = Path(__file__).resolve().parents[3]


class DrillSystem:
    def __init__(self, system: System, state: dict[str, Any], root: Path) -> None:
        self.system, self.state, self.root = system, state, root

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stackwright.cli", *args, "--state-dir", str(self.root)],
                              capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillSystem]:
    system = load_system(SPEC)
    root = tmp_path_factory.mktemp("chaos")
    with system_up(SPEC, root, extra_args=drill_up_args(system), timeout_s=180) as state:
        yield DrillSystem(system, state, root)


def test_chaos_command_prints_the_table_and_passes(tmp_path: Path) -> None:
    # First in the module, so its own copy of the system does not run beside the module's drill copy.
    out = tmp_path / "chaos.json"
    done = subprocess.run([sys.executable, "-m", "stackwright.cli", "chaos", str(SPEC), "--faults", "worker",
                           "--rate", "20", "--no-poison", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "acknowledged" in done.stdout and "PASS" in done.stdout
    result = json.loads(out.read_text())
    assert result["ok"] and result["faults"][0]["fault"] == "worker" and result["faults"][0]["lost"] == 0


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_drill_run_has_a_short_visibility_timeout(drilled: DrillSystem) -> None:
    for service in ("vote", "worker"):
        env = _environ(drilled.state["services"][service][0]["pid"])
        assert float(env["VOTES_VISIBILITY_TIMEOUT"]) == DRILL_VISIBILITY_TIMEOUT_S
        assert env["VOTES_MAX_RECEIVE"] == "5"


def test_kill_each_process_while_votes_flow_loses_and_duplicates_nothing(drilled: DrillSystem) -> None:
    Drill = load_plugin(drilled.system, "drills").Drill
    drill = Drill(drilled.system, drilled.state, drilled.root)
    log: list[str] = []
    rows = asyncio.run(drill.run(list(Drill.FAULTS), rate=40, report=log.append))
    console = Console(width=140, record=True)
    console.print(render_table(rows))
    print(console.export_text())  # shown with -s / -rA: the numbers of this run
    print("\n".join(log))
    assert [r.fault for r in rows] == list(Drill.FAULTS)
    for row in rows:
        assert row.acknowledged > 0, row
        assert row.lost == 0 and row.duplicated == 0, row
        assert row.counted == row.acknowledged, row
        assert row.aggregates_ok, row.note
        assert row.respawned_s is not None and row.ready_s is not None and row.flow_s is not None, row
    restarts = read_state("voting", drilled.root)["restarts"]
    assert all(restarts[name] >= 1 for name in Drill.FAULTS), restarts


def test_poison_messages_are_dead_lettered_listed_and_redriven_by_the_cli(drilled: DrillSystem) -> None:
    state = drilled.state
    max_receive = drilled.system.resources["votes"].max_receive_count
    missing_poll = str(uuid.uuid4())
    now = time.time()
    poison = {"vote_id": str(uuid.uuid4()), "poll_id": missing_poll, "user_id": "poisoner", "option": "A",
              "accepted_at": now, "sent_at": now}
    malformed = {"not": "a vote", "nonce": uuid.uuid4().hex}

    async def send_and_wait() -> None:
        q = queue_from_url(state["resources"]["votes"], "voting-votes")
        try:
            await q.send(poison)
            await q.send(malformed)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                bodies = [m.body for m in await q.dlq_messages(limit=10_000)]
                if poison in bodies and malformed in bodies:
                    return
                await asyncio.sleep(0.25)
            raise AssertionError("poison messages were not dead-lettered within 90 s")
        finally:
            await q.close()

    asyncio.run(send_and_wait())
    listed = drilled.cli("queue", "dlq", str(SPEC), "--json", "--limit", "100000")
    assert listed.returncode == 0, listed.stderr
    dlq = json.loads(listed.stdout)["queues"]["votes"]
    mine = {json.dumps(m["body"], sort_keys=True): m for m in dlq["messages"]}
    for body in (poison, malformed):
        entry = mine[json.dumps(body, sort_keys=True)]
        assert entry["receive_count"] == max_receive, entry  # delivered N times, then parked
    assert dlq["dlq_depth"] >= 2

    table = drilled.cli("queue", "dlq", str(SPEC))
    assert table.returncode == 0 and "DLQ of 'votes'" in table.stderr, table.stderr

    async def create_missing_poll() -> None:
        conn = await asyncpg.connect(state["resources"]["db"])
        try:
            await conn.execute("INSERT INTO polls (id, title, options, status, created_by) "
                               "VALUES ($1, 'repaired', ARRAY['A','B'], 'open', 'operator')", uuid.UUID(missing_poll))
        finally:
            await conn.close()

    asyncio.run(create_missing_poll())  # the operator fixes the cause, then redrives
    redriven = drilled.cli("queue", "dlq", str(SPEC), "--redrive", "--json")
    assert redriven.returncode == 0, redriven.stderr
    assert json.loads(redriven.stdout)["queues"]["votes"]["redriven"] >= 2

    async def outcome() -> tuple[bool, bool]:
        conn = await asyncpg.connect(state["resources"]["db"])
        q = queue_from_url(state["resources"]["votes"], "voting-votes")
        try:
            deadline = time.monotonic() + 90
            counted = back = False
            while time.monotonic() < deadline and not (counted and back):
                counted = bool(await conn.fetchval("SELECT count(*) FROM votes WHERE vote_id = $1",
                                                   uuid.UUID(poison["vote_id"])))
                back = malformed in [m.body for m in await q.dlq_messages(limit=10_000)]
                await asyncio.sleep(0.25)
            return counted, back
        finally:
            await conn.close()
            await q.close()

    counted, back = asyncio.run(outcome())
    assert counted, "the repaired vote was not counted after the redrive"
    assert back, "the still-malformed message did not return to the DLQ"
