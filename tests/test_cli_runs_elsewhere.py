"""A bare system name reaches its run from any folder, through the record ``up`` keeps of each run
(``$XDG_STATE_HOME/stackwright/runs/``): from a folder without ``systems/`` a newcomer's ``status voting``,
``logs voting vote`` and ``token voting`` said "no system.yaml found for 'voting'" while voting ran.

The runs here are the records a run leaves (its state and the pointer to it, written by ``write_state``)
with this test process as their live runner, so nothing is started; ``tests/local/test_state_elsewhere.py``
does the same with real runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackwright.local.state import process_start, system_dir, write_state
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path, xdg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackwright.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, "XDG_STATE_HOME": str(xdg), "COLUMNS": "400"})


def _record_run(spec_path: Path, started_in: Path, xdg: Path, monkeypatch: pytest.MonkeyPatch,
                process: str = "vote") -> Path:
    """Leave what ``up`` run from ``started_in`` leaves while starting: a state naming its spec and its live
    runner (this process), a log of ``process``, and the pointer to that state. Returns the run's folder."""
    started_in.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    monkeypatch.chdir(started_in)
    spec = load_system(spec_path)
    write_state(spec, {"system": spec.name, "spec": str(spec.source), "status": "starting",
                       "runner_pid": os.getpid(), "runner_start": process_start(os.getpid()),
                       "steps": ["✓ postgres (1.0s)", "✓ redis (0.2s)", "… services"]})
    sdir = system_dir(spec).resolve()
    (sdir / "logs").mkdir(exist_ok=True)
    (sdir / "logs" / f"{process}.log").write_text(f"{process} listening\n")
    return sdir


def test_a_bare_name_reaches_the_run_started_in_another_folder(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    xdg, elsewhere = tmp_path / "xdg", tmp_path / "other"
    elsewhere.mkdir()
    sdir = _record_run(ROOT / "systems" / "voting" / "system.yaml", tmp_path / "newcomer", xdg, monkeypatch)

    status = _cli("status", "voting", cwd=elsewhere, xdg=xdg)
    assert status.returncode == 1, status.stderr
    assert status.stderr.strip() == (f"voting is starting: 2 step(s) done, now services (runner pid {os.getpid()}; "
                                     "follow it with 'stackwright logs voting -f')")

    logs = _cli("logs", "voting", "vote", "--tail", "1", cwd=elsewhere, xdg=xdg)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip() == "vote | vote listening"

    token = _cli("token", "voting", "--sub", "a", cwd=elsewhere, xdg=xdg)
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2  # a JWT, signed by the run's own key (made in the run's folder)
    assert (sdir / "idp-key.pem").is_file() and not (elsewhere / ".stackwright").exists()

    again = _cli("up", "voting", "--no-dashboard", cwd=elsewhere, xdg=xdg)  # a second run would fight the first
    assert again.returncode == 2 and again.stderr.startswith("error: voting is starting"), again.stderr


def test_several_runs_of_one_name_are_named_and_a_path_asked_for(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    xdg, elsewhere = tmp_path / "xdg", tmp_path / "other"
    elsewhere.mkdir()
    specs = []
    for clone in ("clone-a", "clone-b"):
        folder = tmp_path / clone / "fastapi-app"
        shutil.copytree(ROOT / "systems" / "fastapi-app", folder, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        specs.append(folder / "system.yaml")
        _record_run(specs[-1], tmp_path / clone, xdg, monkeypatch)

    status = _cli("status", "fastapi-app", cwd=elsewhere, xdg=xdg)
    lines = status.stderr.strip().splitlines()
    assert status.returncode == 2 and len(lines) == 1, status.stderr
    assert lines[0].startswith("error: 2 runs of 'fastapi-app' are up, from different folders: ")
    assert lines[0].endswith("; pass the path of the one you mean")
    assert all(str(spec) in lines[0] for spec in specs)

    by_path = _cli("status", str(specs[1]), cwd=elsewhere, xdg=xdg)
    assert by_path.returncode == 1 and by_path.stderr.startswith("fastapi-app is starting"), by_path.stderr


def test_a_name_with_no_run_anywhere_is_not_running_with_the_loader_s_hint(tmp_path: Path) -> None:
    # status exits 1 when a system is not running, from any folder (it said "error: no system.yaml found",
    # exit 2, away from the project root); down has nothing to stop.
    says = ("voting is not running: no run of it is recorded, and no system.yaml for it is here "
            "(hint: run from the project root, or pass a path)")
    for command, code in (("status", 1), ("logs", 1), ("down", 0)):
        proc = _cli(command, "voting", cwd=tmp_path, xdg=tmp_path / "xdg")
        assert (proc.returncode, proc.stderr.strip()) == (code, says), (command, proc.stderr)
    by_path = _cli("status", str(tmp_path / "nowhere" / "system.yaml"), cwd=tmp_path, xdg=tmp_path / "xdg")
    assert by_path.returncode == 2 and by_path.stderr.startswith("error: "), by_path.stderr  # a path is as written
    typo = _cli("plan", "votin", "--out", str(tmp_path / "plan"), cwd=ROOT, xdg=tmp_path / "xdg")
    assert typo.returncode == 2 and typo.stderr.strip().endswith("(hint: did you mean 'voting'?)"), typo.stderr


@pytest.mark.parametrize(("status", "says"), [
    ("starting", "voting is starting: 2 step(s) done, now services"),
    ("failed", "voting failed to start and is stopping what it started"),
    ("stopped", "voting is stopping"),
])
def test_status_of_a_run_not_ready_says_what_it_is_doing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         status: str, says: str) -> None:
    """A foreground ``up`` still starting its services was reported "voting is not running"."""
    spec = ROOT / "systems" / "voting" / "system.yaml"
    sdir = _record_run(spec, tmp_path / "here", tmp_path / "xdg", monkeypatch)
    state = (sdir / "state.json").read_text().replace('"status": "starting"', f'"status": "{status}"')
    (sdir / "state.json").write_text(state)
    proc = _cli("status", str(spec), cwd=tmp_path / "here", xdg=tmp_path / "xdg")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"{says} (runner pid {os.getpid()}; follow it with 'stackwright logs voting -f')")
