"""Start a system in the background, find a running one, stop it: what status/down/demo/tests build on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .state import SpecLike, claim, is_running, leftovers, read_state, runner_alive, same_process, system_dir


class ControlError(RuntimeError):
    """Starting or stopping failed; the message says why and where the log is."""


def start_detached(spec_path: Path, *, port: int = 8080, extra_args: list[str] | None = None,
                   state_root: Path | None = None, timeout_s: float = 240.0,
                   on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``stackwright up`` as a background process and wait until it is ready. Returns its state."""
    from ..spec import load_system

    system = load_system(spec_path)
    sdir = claim(system, state_root)
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
    try:
        while time.monotonic() < deadline:
            state = read_state(system, state_root)
            fresh = state is not None and state.get("runner_pid") == proc.pid
            if fresh and on_step is not None:
                steps = [s for s in state.get("steps", []) if s.startswith("✓")]
                for step in steps[seen:]:
                    on_step(step)
                seen = len(steps)
            if fresh and state.get("status") == "ready":
                return state
            if proc.poll() is not None:
                why = _last_error(log_path) or f"stackwright up exited with code {proc.returncode}"
                raise ControlError(f"{why} (log: {log_path})")
            time.sleep(0.2)
    except (KeyboardInterrupt, SystemExit):
        # The run is in its own session, so the terminal's Ctrl-C never reached it: stop what was being started
        # instead of leaving a half-started system behind with nobody told.
        _terminate(proc)
        raise
    _terminate(proc)
    raise ControlError(f"system did not become ready within {timeout_s:.0f}s (started {started:.0f}); "
                       f"see {log_path}")


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM to a background ``up`` (its runner stops what it started, in order), SIGKILL to its process
    group if it is still there after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def running_state(system: str | SpecLike, state_root: Path | None = None) -> dict[str, Any] | None:
    """The state of the system if it is up and ready, else None."""
    state = read_state(system, state_root)
    return state if is_running(state) else None


def stop(system: str | SpecLike, state_root: Path | None = None, timeout_s: float = 60.0) -> bool:
    """Stop a system: SIGTERM to its runner, which stops everything in order; then whatever a runner that
    died without cleaning up (kill -9) left behind. False if nothing was running."""
    state = read_state(system, state_root)
    if not state:
        return False
    runner = state.get("runner_pid")
    stopped = False
    if runner_alive(state):
        os.kill(runner, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and runner_alive(state):
            time.sleep(0.1)
        if runner_alive(state):
            os.killpg(runner, signal.SIGKILL)
        stopped = True
    left = stop_leftovers(read_state(system, state_root), data_dir=system_dir(system, state_root) / "postgres")
    return stopped or bool(left)


def stop_leftovers(state: dict[str, Any] | None, *, data_dir: Path | None = None,
                   timeout_s: float = 30.0) -> dict[str, int]:
    """Stop the processes a dead runner left running; returns ``{name: pid}`` of those stopped.

    Each gets its own stop signal (SIGINT: Postgres' fast shutdown; SIGTERM: the others' graceful one),
    then SIGKILL after ``timeout_s``. Only pids recorded with their start time and still matching it are
    signalled (state.leftovers), so a pid reused by another program is left alone. A Postgres still
    serving the data directory but not recorded (a state from before start times, or overwritten) is
    found through its ``postmaster.pid`` and stopped with ``pg_ctl``. Nothing is done while the runner
    that wrote ``state`` is alive.
    """
    if runner_alive(state):
        return {}
    found = leftovers(state)
    for rec in found.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec["pid"], rec.get("stop_signal") or signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(same_process(r["pid"], r["start"]) for r in found.values()):
        time.sleep(0.1)
    for rec in found.values():
        if same_process(rec["pid"], rec["start"]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec["pid"], signal.SIGKILL)
    stopped = {name: rec["pid"] for name, rec in found.items()}
    recorded = ((state or {}).get("backing", {}).get("postgres") or {}).get("data_dir")
    pg_dir = Path(recorded) if recorded else data_dir
    if pg_dir is not None:
        from .backing.postgres import stop_stray

        pid = stop_stray(pg_dir, timeout_s=timeout_s)
        if pid is not None:
            stopped.setdefault("postgres", pid)
    return stopped


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
