"""A copy of a system (another folder, same ``name:``) must not share the original's data and state."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackwright.local.runner import LocalSystem, UpOptions
from stackwright.local.state import write_state
from stackwright.spec import System, load_system

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = REPO / "systems" / "fastapi-app"
NAME = "fastapi-app"


@pytest.fixture
def copy(tmp_path: Path) -> System:
    shutil.copytree(ORIGINAL, tmp_path / "elsewhere" / NAME)
    return load_system(tmp_path / "elsewhere" / NAME / "system.yaml")


@pytest.fixture
def runner_like() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing in for the original's runner, so its state reads as running."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc
    proc.kill()
    proc.wait()


def _start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times come from /proc")
def test_a_copy_with_the_same_name_gets_its_own_state_and_status_does_not_mix_them(
        tmp_path: Path, copy: System, runner_like: subprocess.Popen[bytes]) -> None:
    original = load_system(ORIGINAL / "system.yaml")
    root = tmp_path / "state"
    # The original is up (as its runner would record it).
    LocalSystem(original, UpOptions(state_root=root))
    write_state(NAME, {"system": NAME, "spec": str(original.source), "status": "ready",
                           "runner_pid": runner_like.pid, "runner_start": _start(runner_like.pid),
                           "gateway": "http://127.0.0.1:1", "services": {}, "backing": {}, "restarts": {}}, root)

    status = subprocess.run([sys.executable, "-m", "stackwright.cli", "status", str(copy.source),
                             "--state-dir", str(root)], capture_output=True, text=True, timeout=120, check=False)
    assert status.returncode == 1 and status.stderr.strip() == f"{NAME} is not running"

    mine = LocalSystem(copy, UpOptions(state_root=root)).dir
    assert mine.parent == root.resolve() and mine.name.startswith(f"{NAME}-")
    assert LocalSystem(original, UpOptions(state_root=root)).dir == (root / NAME).resolve()  # users keep theirs
    assert LocalSystem(copy, UpOptions(state_root=root)).dir == mine  # and the copy keeps its own


def test_a_folder_from_before_keys_stays_with_the_spec_its_state_names(tmp_path: Path, copy: System) -> None:
    original = load_system(ORIGINAL / "system.yaml")
    root = tmp_path / "state"
    legacy = root / NAME
    legacy.mkdir(parents=True)
    (legacy / "state.json").write_text(json.dumps({"system": NAME, "spec": str(original.source)}))
    assert LocalSystem(copy, UpOptions(state_root=root)).dir != legacy.resolve()
    assert LocalSystem(original, UpOptions(state_root=root)).dir == legacy.resolve()
    # A folder with no record at all is taken as it is by whoever comes first: its data stays reachable.
    bare = tmp_path / "bare"
    (bare / NAME / "postgres").mkdir(parents=True)
    assert LocalSystem(copy, UpOptions(state_root=bare)).dir == (bare / NAME).resolve()
