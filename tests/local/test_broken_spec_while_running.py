"""A spec broken while its system runs must not strand the system: ``status``, ``logs`` and ``down`` warn
about the error and still reach the running processes (they key on the name and folder only)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackwright.local.ports import free_port
from stackwright.local.state import read_state

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackwright.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False)


def test_status_logs_and_down_reach_a_system_whose_spec_broke(tmp_path: Path) -> None:
    folder = tmp_path / "fastapi-app"
    shutil.copytree(REPO / "systems" / "fastapi-app", folder, ignore=shutil.ignore_patterns(".stackwright"))
    spec, state_dir = folder / "system.yaml", tmp_path / "state"
    up = _cli("up", str(spec), "--detach", "--port", str(free_port()), "--state-dir", str(state_dir),
              "--no-dashboard", cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        spec.write_text(spec.read_text().replace("  azs: 2", "  azs: two", 1))
        status = _cli("status", str(spec), "--state-dir", str(state_dir), cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "warning:" in status.stderr and "system.yaml:" in status.stderr and "Traceback" not in status.stderr
        # The table is the result, on stdout (warnings stay on stderr), and lists the edge as a process too.
        table = status.stdout
        assert "api" in table and "postgres" in table and "gateway" in table, status.stdout + status.stderr
        logs = _cli("logs", str(spec), "api", "--tail", "5", "--state-dir", str(state_dir), cwd=tmp_path)
        assert logs.returncode == 0 and "api" in logs.stdout, logs.stdout + logs.stderr
    finally:
        down = _cli("down", str(spec), "--state-dir", str(state_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "fastapi-app stopped" in down.stdout + down.stderr
    state = read_state("fastapi-app", state_dir)
    assert state is None or state.get("status") != "ready"
