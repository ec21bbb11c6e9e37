"""The record of a running local system (``.stackwright/<system>/state.json``, see system_dir), read by
status/down/demo."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol

STATE_ROOT = Path(".stackwright")
OWNER_FILE = "spec-folder"


class SpecLike(Protocol):
    """What keys a system's state: its name and the folder its system.yaml is in (a spec.System)."""

    name: str

    @property
    def base_dir(self) -> Path: ...


def system_dir(system: str | SpecLike, root: Path | None = None) -> Path:
    """Where a system keeps its local data, logs and state.

    Given a spec, the folder depends on where the spec is, not only on its name, so a copy of a system
    (another folder, same ``name:``) never shares the original's database or state: ``<root>/<name>/``
    belongs to the first spec folder that used it (recorded in its ``spec-folder`` file; for a folder
    made before that file existed, the spec path in its state.json; a folder with neither is claimed as
    is, so existing data stays where it was), and any other spec folder with that name gets
    ``<root>/<name>-<8 hex of its folder's path>/``. If the recorded folder no longer holds a system.yaml
    (the project moved or was deleted), the next spec of that name without a folder of its own takes
    ``<root>/<name>/`` over.
    Given only a name, ``<root>/<name>/`` (for callers without a spec, with a private ``root``).
    """
    if isinstance(system, str):
        return (root or STATE_ROOT) / system
    base = root or _default_root(system)
    plain = base / system.name
    folder = system.base_dir.resolve()
    own = base / f"{system.name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"
    owner = spec_folder_of(plain)
    if owner == folder:
        return plain
    if own.is_dir():
        return own  # a copy that already has data of its own keeps it
    if owner is None or not (owner / "system.yaml").is_file():
        return plain
    return own


def _runs_dir() -> Path:
    """Where each spec folder's last default-root run is recorded (``$XDG_STATE_HOME/stackwright/runs``)."""
    home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(home) / "stackwright" / "runs"


def _run_pointer(system: SpecLike) -> Path:
    folder = str(system.base_dir.resolve())
    return _runs_dir() / f"{system.name}-{hashlib.sha256(folder.encode()).hexdigest()[:16]}"


def _default_root(system: SpecLike) -> Path:
    """The state root when none is given: ``.stackwright`` in the current folder, unless that holds no run of
    this spec and the spec's live run was started from another folder (``up`` records where; see
    :func:`write_state`): then that run's root, so ``status``, ``down``, ``logs`` and ``demo`` find a system
    wherever it was started from, and a second ``up`` sees it is running."""
    try:
        elsewhere = Path(_run_pointer(system).read_text().strip())
    except (OSError, ValueError):
        return STATE_ROOT
    # Only a run recorded in another folder needs the states read (the common case, started here, reads none).
    if elsewhere == STATE_ROOT.resolve() or _live_run_in(system, STATE_ROOT):
        return STATE_ROOT
    return elsewhere if _live_run_in(system, elsewhere) else STATE_ROOT


def recorded_runs(name: str) -> list[tuple[Path, Path]]:
    """``(system.yaml, state root)`` of every run of a system named ``name`` that ``up`` recorded (see
    :func:`write_state`) and that is still there: its runner lives (starting or ready), or processes its killed
    runner left do. One per spec folder (clones of a project each have their own), sorted by spec path.

    This is how a bare name reaches a system started from another folder: the record names the state root,
    and the state there names the spec."""
    try:
        pointers = [p for p in _runs_dir().iterdir() if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}", p.name)]
    except OSError:
        return []
    found: dict[Path, Path] = {}
    for pointer in pointers:
        try:
            root = Path(pointer.read_text().strip())
            folders = [d for d in root.iterdir()
                       if d.name == name or re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{8}}", d.name)]
        except (OSError, ValueError):
            continue
        for sdir in folders:
            try:
                state = json.loads((sdir / "state.json").read_text())
                spec = Path(state["spec"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            # The pointer's name carries a hash of the spec folder: only the run that record is about counts.
            digest = hashlib.sha256(str(spec.resolve().parent).encode()).hexdigest()[:16]
            if state.get("system") == name and pointer.name.endswith(digest) and spec.is_file() \
                    and (runner_alive(state) or leftovers(state)):
                found[spec.resolve()] = root
    return sorted(found.items())


def _live_run_in(system: SpecLike, root: Path) -> bool:
    try:
        state = json.loads((system_dir(system, root) / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return runner_alive(state)


def spec_folder_of(sdir: Path) -> Path | None:
    """The spec folder whose state ``sdir`` holds, or None if nothing says."""
    try:
        return Path((sdir / OWNER_FILE).read_text().strip())
    except OSError:
        pass
    try:
        spec = json.loads((sdir / "state.json").read_text()).get("spec")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return Path(spec).resolve().parent if spec else None


def claim(system: SpecLike, root: Path | None = None) -> Path:
    """Create the system's folder (system_dir) and record which spec folder it belongs to."""
    sdir = system_dir(system, root)
    sdir.mkdir(parents=True, exist_ok=True)
    folder = str(system.base_dir.resolve())
    marker = sdir / OWNER_FILE
    if not marker.exists() or marker.read_text().strip() != folder:
        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(folder + "\n")
        tmp.replace(marker)
    return sdir


def state_file(system: str | SpecLike, root: Path | None = None) -> Path:
    return system_dir(system, root) / "state.json"


def read_state(system: str | SpecLike, root: Path | None = None) -> dict[str, Any] | None:
    """The state of a system, or None if it was never started."""
    path = state_file(system, root)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(system: str | SpecLike, state: dict[str, Any], root: Path | None = None) -> None:
    """Replace the state atomically so readers never see half a file."""
    path = state_file(system, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)
    if root is None and not isinstance(system, str):  # say where this spec's run is, for other folders
        with contextlib.suppress(OSError):
            pointer = _run_pointer(system)
            pointer.parent.mkdir(parents=True, exist_ok=True)
            where = str(path.parent.parent.resolve())
            if not pointer.exists() or pointer.read_text().strip() != where:
                tmp = pointer.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(where + "\n")
                tmp.replace(pointer)


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
