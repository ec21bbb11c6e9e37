"""The record of a running local system (``.stackwright/<system>/state.json``), read by status/down/demo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STATE_ROOT = Path(".stackwright")


def system_dir(system: str, root: Path | None = None) -> Path:
    """Where a system keeps its local data, logs and state."""
    return (root or STATE_ROOT) / system


def state_file(system: str, root: Path | None = None) -> Path:
    return system_dir(system, root) / "state.json"


def read_state(system: str, root: Path | None = None) -> dict[str, Any] | None:
    """The state of a system, or None if it was never started."""
    path = state_file(system, root)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(system: str, state: dict[str, Any], root: Path | None = None) -> None:
    """Replace the state atomically so readers never see half a file."""
    path = state_file(system, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        # Reap it if it is our own exited child, or it would linger as a zombie that looks alive.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int | None) -> str | None:
    """An opaque token for when ``pid`` started, or None if no such (live) process.

    A pid plus its start time names one process for good, so a pid the kernel has since handed to
    another program is never mistaken for ours. Linux: field 22 of ``/proc/<pid>/stat`` (clock ticks since
    boot; a zombie counts as gone). Other platforms: ``psutil``'s create time when psutil is installed,
    else None (then nothing recorded can be verified, and callers leave such pids alone).
    """
    if not pid:
        return None
    stat = Path(f"/proc/{pid}/stat")
    if sys.platform.startswith("linux"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        if fields[0] in ("Z", "X"):
            return None
        return fields[19]
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{proc.create_time():.3f}"
    except psutil.Error:
        return None


def same_process(pid: int | None, start: str | None) -> bool:
    """True if ``pid`` is alive and is the very process that started at ``start`` (see process_start)."""
    return bool(pid) and start is not None and process_start(pid) == start


def runner_alive(state: dict[str, Any] | None) -> bool:
    """True if the runner that wrote this state is still that same process."""
    if not state:
        return False
    pid = state.get("runner_pid")
    if "runner_start" in state:
        return same_process(pid, state["runner_start"])
    return pid_alive(pid)  # a state written before start times were recorded


def is_running(state: dict[str, Any] | None) -> bool:
    """True if the runner that wrote this state is still alive and reached 'ready'."""
    return bool(state) and state.get("status") == "ready" and runner_alive(state)


def leftovers(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Processes of a run whose runner is gone but which still live: ``{name: {pid, start, stop_signal}}``.

    Only processes recorded with their start time and still matching it count, so a reused pid is never
    reported (nor, by ``control.stop_leftovers``, killed). Empty while the runner itself is alive.
    """
    if not state or runner_alive(state):
        return {}
    return {name: rec for name, rec in (state.get("processes") or {}).items()
            if same_process(rec.get("pid"), rec.get("start"))}
