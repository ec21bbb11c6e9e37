"""``stackwright status`` with its output to a pipe, as ``status | grep`` or ``status > file`` see it: no ANSI
escape codes and each table row on one line, not cut at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"


def _status(running: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TTY_COMPATIBLE")}
    return subprocess.run([sys.executable, "-m", "stackwright.cli", "status", str(SPEC), "--state-dir",
                           running["state_root"]], capture_output=True, text=True, timeout=120, env=base)


def test_status_to_a_pipe_is_plain_text_with_whole_rows(running: dict[str, Any]) -> None:
    proc = _status(running)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout + proc.stderr
    (replica,) = running["services"]["api"]
    rows = [line for line in proc.stdout.splitlines() if replica["url"] in line]
    assert len(rows) == 1, proc.stdout
    # The whole row on one line: process, url, pid, restarts, readiness and the dependency checks.
    cells = [cell.strip() for cell in rows[0].strip("│ ").split("│")]
    assert cells[:5] == [replica["process"], replica["url"], str(replica["pid"]), "0", "yes"], rows[0]
    assert "db ok" in cells[5], rows[0]
    assert len(rows[0]) > 80  # rich's fallback width squeezed the table into 80 columns
    header = next(line for line in proc.stdout.splitlines() if "process" in line)
    assert all(name in header for name in ("url", "pid", "restarts", "ready", "dependencies")), header



def test_status_says_whether_every_process_answers(running: dict[str, Any]) -> None:
    # Postgres, the gateway and the dashboard had blank "ready" cells (and Postgres' pid read "None"): a
    # reader could not tell a dead database from a live one.
    proc = _status(running)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")]
            for line in proc.stdout.splitlines() if line.startswith("│")]
    names = {row[0] for row in rows}
    (replica,) = running["services"]["api"]
    assert {replica["process"], "postgres", "gateway"} <= names, proc.stdout
    for row in rows:
        assert row[2].isdigit() and row[4] == "yes", row
