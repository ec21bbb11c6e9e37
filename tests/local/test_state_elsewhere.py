"""A system started from one folder is found from any other: ``status``, ``down`` and a second ``up`` reach
the run wherever ``.stackwright/`` was made (a newcomer ran ``up`` in ``systems/``, then ``status`` and
``down`` from the project root said "not running" while it held its port)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackwright.local.ports import free_port, port_in_use

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "systems" / "fastapi-app" / "system.yaml"


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackwright.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300, check=False)


def test_status_and_down_from_another_folder_reach_the_run(tmp_path: Path) -> None:
    started_in, elsewhere = tmp_path / "started-here", tmp_path / "elsewhere"
    started_in.mkdir()
    elsewhere.mkdir()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    port = free_port()
    up = _cli("up", str(SPEC), "-d", "--port", str(port), "--no-dashboard", cwd=started_in, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert (started_in / ".stackwright" / "fastapi-app" / "state.json").exists()
        status = _cli("status", str(SPEC), cwd=elsewhere, env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "api" in status.stdout and "gateway" in status.stdout
        # by its bare name too, from a folder with no systems/ (the runs record says where the run is)
        by_name = _cli("status", "fastapi-app", cwd=elsewhere, env=env)
        assert by_name.returncode == 0 and "api" in by_name.stdout, by_name.stdout + by_name.stderr
        logs = _cli("logs", "fastapi-app", "postgres", "--tail", "1", cwd=elsewhere, env=env)
        assert logs.returncode == 0 and logs.stdout.startswith("postgres | "), logs.stdout + logs.stderr
        again = _cli("up", str(SPEC), "-d", "--port", str(free_port()), "--no-dashboard", cwd=elsewhere, env=env)
        assert again.returncode != 0 and "already" in again.stderr, again.stdout + again.stderr
        down = _cli("down", "fastapi-app", cwd=elsewhere, env=env)
        assert down.returncode == 0 and "fastapi-app stopped" in down.stdout + down.stderr, down.stderr
        assert not port_in_use(port)
        assert not (elsewhere / ".stackwright").exists()  # nothing of the run was made where it was not started
    finally:
        _cli("down", str(SPEC), cwd=started_in, env=env)
