"""The fault-drill machinery on its own (fast; no whole system): killing a supervised process and
measuring its return, the open-loop sender, the result rows, and the CLI's refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from stackwright.local.chaos import (
    ChaosError,
    DrillRow,
    OpenLoop,
    check_faults,
    drill_up_args,
    kill_and_recover,
    process_pid,
    render_table,
)
from stackwright.local.ports import free_port
from stackwright.local.state import write_state
from stackwright.local.supervisor import ProcessSpec, Supervisor
from stackwright.runtime.problems import dependency_unavailable
from stackwright.spec import load_system

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VOTING = REPO / "systems" / "voting" / "system.yaml"


async def test_kill_and_recover_measures_a_supervised_restart(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "readyz").write_text("ok")  # http.server answers 200 for /readyz
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    supervisor: Supervisor

    def save(_: str = "") -> None:
        write_state("demo", {"services": {"web": [{"url": url, "pid": supervisor.pids().get("web"),
                                                   "process": "web"}]}, "backing": {},
                             "restarts": supervisor.restarts()}, tmp_path)

    supervisor = Supervisor(tmp_path / "logs", echo=False, on_event=save)
    await supervisor.start(ProcessSpec(
        name="web", argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=site,
        ready=lambda: _http_ok(f"{url}/readyz")), ready_timeout_s=30)
    save()
    try:
        first = supervisor.pids()["web"]
        rec = await kill_and_recover("demo", tmp_path, "web", timeout_s=30)
        assert rec.killed_pid == first and rec.new_pid not in (None, first)
        assert rec.respawned_s is not None and rec.ready_s is not None and rec.ready_s >= rec.respawned_s
        assert supervisor.restarts()["web"] == 1
        with pytest.raises(ChaosError, match="nope has no running process"):
            await kill_and_recover("demo", tmp_path, "nope")
    finally:
        await supervisor.stop_all()


async def _http_ok(url: str) -> bool:
    import httpx

    async with httpx.AsyncClient(timeout=1) as client:
        return (await client.get(url)).status_code == 200


async def test_open_loop_does_not_wait_for_slow_answers() -> None:
    in_flight = 0
    most = 0

    async def slow(i: int) -> tuple[int, dict[str, int]]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        if i == 3:
            raise ConnectionResetError("boom")
        return 202, {"i": i}

    sender = OpenLoop(rate=100, request=slow)
    task = asyncio.create_task(sender.run())
    await asyncio.sleep(0.2)
    sender.stop()
    await task
    assert most > 1  # later requests went out while earlier ones were still waiting
    assert all(o.status == 202 or o.error == "ConnectionResetError" for o in sender.outcomes)
    assert [o.index for o in sender.outcomes] == list(range(len(sender.outcomes)))
    assert all(o.latency_s > 0 for o in sender.outcomes)  # every request was awaited before run() returned


def test_rows_fail_on_loss_duplicates_or_mismatched_totals() -> None:
    good = DrillRow("worker", acknowledged=10, counted=10, respawned_s=0.5, ready_s=1.0, flow_s=1.2)
    assert good.ok and good.as_dict()["ok"] is True
    assert not DrillRow("vote", acknowledged=10, counted=9, lost=1).ok
    assert not DrillRow("redis", duplicated=1).ok
    assert not DrillRow("postgres", aggregates_ok=False).ok
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(render_table([good, DrillRow("vote", lost=1)]))
    text = console.export_text()
    assert "acknowledged" in text and "worker" in text and "1.20s" in text


def test_processes_are_found_in_the_state() -> None:
    state = {"services": {"vote": [{"pid": 11, "url": "u", "process": "vote"}]},
             "backing": {"redis": {"pid": 22, "url": "r"}, "postgres": {"pid": None, "url": "p"}}}
    assert process_pid(state, "vote") == 11
    assert process_pid(state, "redis") == 22
    assert process_pid(state, "postgres") is None
    assert process_pid(state, "worker") is None


def test_drills_know_their_faults_and_the_queues_to_shorten() -> None:
    voting = load_system(VOTING)
    check_faults(voting, ["worker", "vote", "redis", "postgres"])
    with pytest.raises(ChaosError, match="unknown fault"):
        check_faults(voting, ["worker", "gateway"])
    with pytest.raises(ChaosError, match="fastapi-app provides no drills"):
        check_faults(load_system(REPO / "systems" / "fastapi-app" / "system.yaml"), ["api"])
    assert drill_up_args(voting, 1.5) == ["--visibility-timeout", "votes=1.5"]


def test_unreachable_dependencies_are_classified_as_unavailable() -> None:
    import asyncpg
    import redis.exceptions

    assert dependency_unavailable(ConnectionRefusedError())
    assert dependency_unavailable(redis.exceptions.ConnectionError("closed"))
    assert dependency_unavailable(asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert not dependency_unavailable(asyncpg.exceptions.ForeignKeyViolationError("no such poll"))
    assert not dependency_unavailable(KeyError("vote_id"))
    # The statement after a connection's failed network operation (Postgres killed), as asyncpg 0.32 says it.
    assert dependency_unavailable(asyncpg.exceptions.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"))
    assert not dependency_unavailable(asyncpg.exceptions.InternalClientError("something else went wrong"))


@pytest.mark.parametrize(("args", "message"), [
    (["chaos", "fastapi-app"], "fastapi-app provides no drills"),
    (["chaos", "voting", "--faults", "worker,gateway"], "unknown fault(s) gateway"),
    (["chaos", "voting", "--rate", "0"], "--rate must be > 0"),
    (["up", "voting", "--visibility-timeout", "db=2"], "not a queue of voting"),
    (["up", "voting", "--visibility-timeout", "votes=-1"], "QUEUE=SECONDS"),
    (["queue", "dlq", "voting", "--queue", "nope"], "has no queue 'nope'"),
])
def test_cli_refuses_bad_drill_arguments_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "stackwright.cli", *args, "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "voting" / "state.json").exists()  # nothing was started
