"""``up`` interrupted while starting, and ports checked before anything starts.

Ctrl-C while ``up`` was starting services exited silently (its processes died with it, out of order); now it
stops what it started, in order, and says so in one line. ``--dashboard-port`` on a busy port was noticed only
after every service had started; now it is refused before anything starts, like a busy ``--port``."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackwright.local.ports import free_port
from stackwright.local.state import pid_alive, system_dir
from stackwright.spec import load_system

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _up(*args: str, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "stackwright.cli", "up", *args, "--quiet-logs",
                             "--state-dir", str(state)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_busy_dashboard_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    spec = ROOT / "systems" / "fastapi-app" / "system.yaml"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        same = free_port()
        for args, says in [
            (("--dashboard-port", str(taken)), f"dashboard port {taken} is already in use"),
            (("--port", str(same), "--dashboard-port", str(same)), f"--dashboard-port {same} is the gateway's"),
        ]:
            proc = _up(str(spec), *(args if "--port" in args else ("--port", str(free_port()), *args)), state=tmp_path)
            _, err = proc.communicate(timeout=120)
            lines = [line for line in err.splitlines() if line.strip()]
            assert proc.returncode == 2 and len(lines) == 1, err
            assert lines[0].startswith(f"error: could not start fastapi-app: {says}"), err
    sdir = system_dir(load_system(spec), tmp_path)
    assert not (sdir / "postgres").exists()  # nothing was started: not even PostgreSQL's data folder
    assert not any((sdir / "logs").iterdir())


@pytest.mark.parametrize("detach", [False, True])
def test_ctrl_c_while_starting_stops_what_started_and_says_so(tmp_path: Path, detach: bool) -> None:
    """Foreground: the run stops what it started. ``-d``: Ctrl-C reaches the waiting command, which stops the
    background run with SIGTERM; that run stops what it started the same way (its log says so)."""
    folder = tmp_path / "app"
    shutil.copytree(ROOT / "systems" / "fastapi-app", folder, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    code = folder / "services" / "api" / "app.py"
    code.write_text("import time\nprint('api is waiting', flush=True)\n"
                    "time.sleep(600)  # never ready: the test interrupts up while it waits\n" + code.read_text())
    spec = folder / "system.yaml"
    state_file = system_dir(load_system(spec), tmp_path / "state") / "state.json"
    proc = _up(str(spec), "--port", str(free_port()), "--no-dashboard", *(["-d"] if detach else []),
               state=tmp_path / "state")
    try:
        deadline = time.monotonic() + 180
        # api's process is up and its output reaches its log (so up has it in hand), but it is never ready
        api_log = state_file.parent / "logs" / "api.log"
        while not (api_log.is_file() and "api is waiting" in api_log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        state = json.loads(state_file.read_text())  # written at the start of each step: api's is under way
        started = {name: rec["pid"] for name, rec in state["processes"].items()}
        assert {"postgres", "gateway"} <= set(started)  # api is being started (the state has it once ready)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    runner_said = "interrupted while starting fastapi-app: stopped api, gateway, postgres"
    if detach:
        assert lines == ["interrupted while starting fastapi-app in the background: stopped it"], err
        log = (state_file.parent / "runner.log").read_text()
        assert runner_said in log.splitlines(), log
    else:
        assert lines == [runner_said], err
    assert not [name for name, pid in started.items() if pid_alive(pid)]
    assert not _running_in(folder)  # api too: no process is left in the copy's folders
    assert json.loads(state_file.read_text())["status"] == "stopped"


def _running_in(folder: Path) -> list[int]:
    """Live processes whose working directory is in ``folder`` (a service runs in its own folder)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(proc / "cwd").readlink().is_relative_to(folder):
                found.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in found if pid_alive(pid)]
