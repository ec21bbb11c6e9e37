"""What a killed runner leaves behind is recognised by pid *and* start time, shown by ``status``, stopped by
``down`` (and by the next ``up``), while a pid the kernel has reused for another program is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackwright.local.backing import LocalPostgres
from stackwright.local.control import running_state
from stackwright.local.ports import free_port
from stackwright.local.state import write_state

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "systems" / "fastapi-app" / "system.yaml"
NAME = "fastapi-app"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times come from /proc")]


def process_start(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: what the runner records next to each pid (see state.process_start)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _sleeper(procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    procs.append(proc)
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackwright.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_status_reports_and_down_stops_what_a_killed_runner_left_but_not_a_reused_pid(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    orphan, stranger = _sleeper(sleepers), _sleeper(sleepers)
    start = process_start(orphan.pid)
    assert start is not None
    write_state(NAME, {
        "system": NAME, "status": "ready", "runner_pid": _dead_pid(), "runner_start": "1",
        "gateway": "http://127.0.0.1:1", "services": {}, "backing": {}, "restarts": {},
        "processes": {
            "api": {"pid": orphan.pid, "start": start, "stop_signal": int(signal.SIGTERM)},
            # Recorded by the old run, but the pid now belongs to another program (other start time).
            "gateway": {"pid": stranger.pid, "start": "1", "stop_signal": int(signal.SIGTERM)},
        }}, tmp_path)

    status = _cli("status", str(SPEC), "--state-dir", str(tmp_path))
    assert status.returncode == 1
    out = " ".join(status.stderr.split())
    assert "stale" in out and f"api (pid {orphan.pid})" in out and f"stackwright down {NAME}" in out
    assert str(stranger.pid) not in out
    assert "Traceback" not in status.stderr

    down = _cli("down", str(SPEC), "--state-dir", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert orphan.wait(timeout=30) == -signal.SIGTERM
    assert stranger.poll() is None, "a reused pid was killed"
    again = _cli("status", str(SPEC), "--state-dir", str(tmp_path))
    assert again.returncode == 1 and again.stderr.strip() == f"{NAME} is not running"


def test_a_runner_pid_reused_by_another_process_is_not_a_running_system(tmp_path: Path) -> None:
    write_state(NAME, {"system": NAME, "status": "ready", "runner_pid": os.getpid(), "runner_start": "1",
                       "services": {}, "backing": {}}, tmp_path)
    assert running_state(NAME, tmp_path) is None


def test_a_postgres_left_serving_the_data_dir_is_stopped_via_pg_ctl_and_a_reused_pid_file_removed(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    pg = LocalPostgres(tmp_path / "data", free_port())
    pg.init()
    orphan = subprocess.Popen(pg.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=pg.data_dir,
                              **pg.process_kwargs())  # type: ignore[call-overload]
    sleepers.append(orphan)
    pid_file = pg.data_dir / "postmaster.pid"
    for _ in range(300):
        if pid_file.exists() and pid_file.read_text().count("\n") >= 7:
            break
        if orphan.poll() is not None:
            break
        time.sleep(0.1)
    assert orphan.poll() is None and int(pid_file.read_text().split()[0]) == orphan.pid

    LocalPostgres(tmp_path / "data", free_port()).before_start()
    assert orphan.wait(timeout=60) == 0  # a fast shutdown, not a kill
    assert not pid_file.exists()

    # A crash left postmaster.pid naming a pid that now belongs to another program: Postgres itself would
    # refuse to start ("lock file already exists"), so it goes.
    stranger = _sleeper(sleepers)
    pid_file.write_text(f"{stranger.pid}\n{pg.data_dir}\n")
    LocalPostgres(tmp_path / "data", free_port()).before_start()
    assert not pid_file.exists() and stranger.poll() is None
