"""Start a system in the background, find a running one, stop it: what status/down/demo/tests build on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .state import is_running, pid_alive, read_state, system_dir


class ControlError(RuntimeError):
    """Starting or stopping failed; the message says why and where the log is."""


def start_detached(spec_path: Path, *, port: int = 8080, extra_args: list[str] | None = None,
                   state_root: Path | None = None, timeout_s: float = 240.0,
                   on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``stackwright up`` as a background process and wait until it is ready. Returns its state."""
    from ..spec import load_system

    system = load_system(spec_path)
    sdir = system_dir(system.name, state_root)
    sdir.mkdir(parents=True, exist_ok=True)
    log_path = sdir / "runner.log"
    argv = [sys.executable, "-m", "stackwright.cli", "up", str(spec_path), "--port", str(port), "--quiet-logs",
            *(extra_args or [])]
    if state_root is not None:
        argv += ["--state-dir", str(state_root)]
    started = time.time()
    with log_path.open("a") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=os.getcwd())
    seen = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(system.name, state_root)
        fresh = state is not None and state.get("runner_pid") == proc.pid
        if fresh and on_step is not None:
            steps = [s for s in state.get("steps", []) if s.startswith("✓")]
            for step in steps[seen:]:
                on_step(step)
            seen = len(steps)
        if fresh and state.get("status") == "ready":
            return state
        if proc.poll() is not None:
            raise ControlError(f"{_last_error(log_path) or 'stackwright up exited with code ' + str(proc.returncode)}"
                               f" (log: {log_path})")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise ControlError(f"system did not become ready within {timeout_s:.0f}s (started {started:.0f}); "
                       f"see {log_path}")


def running_state(system: str, state_root: Path | None = None) -> dict[str, Any] | None:
    """The state of the system if it is up and ready, else None."""
    state = read_state(system, state_root)
    return state if is_running(state) else None


def stop(system: str, state_root: Path | None = None, timeout_s: float = 60.0) -> bool:
    """Stop a running system (SIGTERM to its runner, which stops everything in order). False if not running."""
    state = read_state(system, state_root)
    if not state:
        return False
    runner = state.get("runner_pid")
    if not pid_alive(runner):
        # The runner died without cleaning up: stop whatever it left behind.
        leftovers = [p["pid"] for procs in state.get("services", {}).values() for p in procs if p.get("pid")]
        leftovers += [b["pid"] for b in state.get("backing", {}).values() if b.get("pid")]
        for pid in leftovers:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        return bool(leftovers)
    os.kill(runner, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(runner):
        time.sleep(0.1)
    if pid_alive(runner):
        os.killpg(runner, signal.SIGKILL)
    return True


def _last_error(log_path: Path) -> str | None:
    """The runner's own one-line error, so the caller sees why without opening the log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines[-50:]):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return None
