"""Issue 19: a ``stackwright up`` killed with -9 must not leave its system running, unseen by status/down
and in the way of the next ``up``. Real runner, real Postgres, real gateway and service processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stackwright.local.ports import free_port
from stackwright.local.state import read_state

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "systems" / "fastapi-app" / "system.yaml"
NAME = "fastapi-app"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackwright.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False)


def process_start(pid: int) -> str | None:
    """Start time of a live, non-zombie process (field 22 of /proc/<pid>/stat), so reused pids don't count."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _system_processes(state: dict, state_dir: Path) -> dict[int, str | None]:
    """Every process of the run, {pid: start}: what the state names plus anything whose command line or
    working folder is inside the state dir (the gateway's config, Postgres' data dir)."""
    pids = {p["pid"] for procs in state["services"].values() for p in procs if p.get("pid")}
    pids |= {b["pid"] for b in state["backing"].values() if b.get("pid")}
    pids |= {rec["pid"] for rec in (state.get("processes") or {}).values()}
    data_dir = (state["backing"].get("postgres") or {}).get("data_dir")
    marks = [str(state_dir.resolve())] + ([data_dir] if data_dir else [])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if any(m in cmdline or cwd.startswith(m) for m in marks):
            pids.add(int(entry.name))
    return {pid: process_start(pid) for pid in pids}


def _alive(procs: dict[int, str | None]) -> dict[int, str]:
    out = {}
    for pid, start in procs.items():
        if start is not None and process_start(pid) == start:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    return out


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the guarantee is Linux's prctl")
def test_kill_9_of_the_foreground_runner_leaves_nothing_running_and_up_works_again(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    port = free_port()
    log = (tmp_path / "up.log").open("w")
    runner = subprocess.Popen(
        [sys.executable, "-m", "stackwright.cli", "up", str(SPEC), "--port", str(port), "--quiet-logs",
         "--state-dir", str(state_dir)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=tmp_path, start_new_session=True)
    procs: dict[int, str | None] = {}
    try:
        deadline = time.monotonic() + 180
        state = None
        while time.monotonic() < deadline:
            state = read_state(NAME, state_dir)
            if state and state.get("runner_pid") == runner.pid and state.get("status") == "ready":
                break
            assert runner.poll() is None, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        assert state and state.get("status") == "ready", "the system did not come up"
        procs = _system_processes(state, state_dir)
        procs.pop(runner.pid, None)
        assert len(procs) >= 3, procs  # postgres, gateway, the api service

        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _alive(procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(procs) == {}, "processes outlived their kill -9'd runner"

        status = _cli("status", str(SPEC), "--state-dir", str(state_dir), cwd=tmp_path)
        assert status.returncode == 1 and "not running" in status.stderr + status.stdout

        again = free_port()
        up = _cli("up", str(SPEC), "-d", "--port", str(again), "--state-dir", str(state_dir), cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        new_state = read_state(NAME, state_dir)
        assert new_state is not None
        procs.update(_system_processes(new_state, state_dir))
        assert httpx.get(f"http://127.0.0.1:{again}/health", timeout=10).status_code == 200
    finally:
        _cli("down", str(SPEC), "--state-dir", str(state_dir), cwd=tmp_path)
        for pid in _alive(procs):
            os.kill(pid, signal.SIGKILL)
        if runner.poll() is None:
            runner.kill()
        log.close()
