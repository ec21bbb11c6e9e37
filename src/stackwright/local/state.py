"""The record of a running local system (``.stackwright/<system>/state.json``), read by status/down/demo."""

from __future__ import annotations

import json
import os
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


def is_running(state: dict[str, Any] | None) -> bool:
    """True if the runner that wrote this state is still alive and reached 'ready'."""
    return bool(state) and state.get("status") == "ready" and pid_alive(state.get("runner_pid"))
