"""The dashboard's snapshot when processes are down, restarting or the whole run is gone: statuses, never
errors. No real system: a state file written here, naming this test process as the runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

from stackwright.local.dashboard.collector import Collector
from stackwright.local.state import process_start
from stackwright.spec import load_system

REPO = Path(__file__).resolve().parents[2]


def _state(tmp_path: Path, *, runner_alive: bool = True, api_alive: bool = True) -> None:
    me = {"pid": os.getpid(), "start": process_start(os.getpid()), "stop_signal": 15}
    processes = {"gateway": me, "postgres": me} | ({"api": me} if api_alive else {})
    state = {
        "system": "fastapi-app", "status": "ready", "runner_pid": os.getpid() if runner_alive else 2**22 + 1,
        "runner_start": process_start(os.getpid()) if runner_alive else "0",
        # Nothing listens on port 9: probes fail fast, as for a process that is still starting.
        "gateway": "http://127.0.0.1:9", "gateway_admin": "http://127.0.0.1:9", "processes": processes,
        "services": {"api": [{"url": "http://127.0.0.1:9", "pid": os.getpid(), "process": "api"}]},
        "backing": {"postgres": {"url": "postgresql://x", "pid": os.getpid()}},
        "restarts": {"postgres": 0, "gateway": 0, "api": 2},
    }
    (tmp_path / "state.json").write_text(json.dumps(state))


async def test_a_dead_process_is_down_with_its_restarts(tmp_path: Path) -> None:
    _state(tmp_path, api_alive=False)
    snap = await Collector(load_system(REPO / "systems/fastapi-app/system.yaml"), tmp_path).snapshot()
    assert snap["nodes"]["svc-api"]["health"] == "down"
    assert snap["services"]["api"]["restarts"] == 2
    assert "↻2" in snap["nodes"]["svc-api"]["line1"]
    assert snap["nodes"]["res-db"]["health"] == "up"  # postgres is alive


async def test_alive_but_not_answering_is_starting(tmp_path: Path) -> None:
    _state(tmp_path)
    snap = await Collector(load_system(REPO / "systems/fastapi-app/system.yaml"), tmp_path).snapshot()
    assert snap["nodes"]["svc-api"]["health"] == "starting"
    assert snap["nodes"]["edge"]["health"] == "starting"


async def test_a_stopped_run_and_a_missing_state_still_give_a_picture(tmp_path: Path) -> None:
    system = load_system(REPO / "systems/fastapi-app/system.yaml")
    snap = await Collector(system, tmp_path).snapshot()
    assert snap["status"] == "not started" and snap["nodes"]["svc-api"]["health"] == "down"
    _state(tmp_path, runner_alive=False)
    snap = await Collector(system, tmp_path).snapshot()
    assert snap["status"] == "stopped"
    assert {p["health"] for p in snap["processes"]} == {"stopped"}
