"""Ctrl-C while ``demo`` is starting the system: the background run is in its own session, so the terminal's
SIGINT never reaches it; the demo must stop it and say so, not leave it starting with nobody told."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackwright.local.ports import free_port, port_in_use
from stackwright.local.state import read_state

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_ctrl_c_while_the_demo_starts_the_system_stops_it(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "stackwright.cli", "demo", "voting", "--port", str(port),
                             "--state-dir", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:  # interrupt once the background run has started something
            state = read_state("voting", tmp_path)
            if state and state.get("processes"):
                break
            time.sleep(0.1)
        assert state and state.get("processes"), "the background run never started a process"
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, out
    assert "interrupted: stopped voting, which this demo was starting" in out, out
    assert "Traceback" not in out
    runner = state["runner_pid"]
    pids = [runner] + [p["pid"] for p in read_state("voting", tmp_path).get("processes", {}).values()]
    assert not [p for p in pids if _alive(p)], f"left running: {pids}"
    assert not port_in_use(port)
