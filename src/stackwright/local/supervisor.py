"""Run processes, multiplex their logs with a prefix, restart crashes with backoff, stop them in order.

Children never outlive the supervisor's process. On Linux each child asks the kernel, between fork and
exec, for its stop signal (SIGINT for Postgres: a fast shutdown) the moment the supervisor dies, however it
dies (``kill -9`` included): ``prctl(PR_SET_PDEATHSIG)``. The kernel ties that signal to the *thread*
that forked, so processes are spawned from the event loop's thread, which lives as long as the
supervisor; and it is cleared when a child changes user, so it is set after the switch to the
unprivileged Postgres user (``subprocess``'s ``user=``/``group=``; no su/runuser wrapper in between).
Other platforms have no such call: there a killed supervisor leaves its children running, and the pids
and start times it recorded (``processes()``, kept in the state file) let ``stackwright down``/``up``
find and stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import term
from .logfiles import stamp
from .state import process_start

_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\s+")
COLORS = ["36", "35", "33", "32", "34", "91", "96", "95", "93", "92"]


@dataclass
class ProcessSpec:
    """How to run one process."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    spawn_kwargs: dict[str, Any] = field(default_factory=dict)
    ready: Callable[[], Awaitable[bool]] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 15.0
    restart: bool = True
    before_start: Callable[[], None] | None = None


@dataclass
class Managed:
    spec: ProcessSpec
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    start_token: str | None = None
    stopping: bool = False
    watcher: asyncio.Task[None] | None = None
    log_file: TextIO | None = None
    pump: asyncio.Task[None] | None = None


_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: between fork and exec the child may only call what is already there.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(sig: int, parent: int) -> None:
    """preexec_fn (Linux): receive ``sig`` when the forking thread of ``parent`` dies."""
    assert _LIBC is not None
    _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        # The parent died between fork and prctl, so no signal will ever come: act on it now.
        os.kill(os.getpid(), sig)


def tie_to_parent(sig: int) -> dict[str, Any]:
    """``Popen`` keyword arguments that make the child get ``sig`` when this process dies (Linux; else {})."""
    if _LIBC is None:
        return {}
    return {"preexec_fn": functools.partial(_die_with_parent, sig, os.getpid())}


class Supervisor:
    """Starts processes, keeps them running, and writes ``name | line`` logs to the console and to files."""

    def __init__(self, log_dir: Path, *, echo: bool = True, on_event: Callable[[str], None] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.on_event = on_event or (lambda msg: None)
        self.procs: dict[str, Managed] = {}
        self._width = 10
        self._color: dict[str, str] = {}

    def pids(self) -> dict[str, int]:
        return {n: m.proc.pid for n, m in self.procs.items() if m.proc and m.proc.returncode is None}

    def processes(self) -> dict[str, dict[str, Any]]:
        """Each live child's pid, start time (state.process_start) and stop signal, for the state file."""
        return {n: {"pid": m.proc.pid, "start": m.start_token, "stop_signal": int(m.spec.stop_signal)}
                for n, m in self.procs.items() if m.proc and m.proc.returncode is None}

    def restarts(self) -> dict[str, int]:
        return {n: m.restarts for n, m in self.procs.items()}

    async def start(self, spec: ProcessSpec, *, ready_timeout_s: float = 60.0) -> None:
        """Start a process and wait until its readiness check passes (or raise)."""
        managed = Managed(spec)
        self.procs[spec.name] = managed
        self._width = max(self._width, len(spec.name))
        self._color[spec.name] = COLORS[len(self._color) % len(COLORS)]
        managed.log_file = (self.log_dir / f"{spec.name}.log").open("a", buffering=1)
        await self._spawn(managed)
        managed.watcher = asyncio.create_task(self._watch(managed))
        if spec.ready is not None:
            await self._wait_ready(managed, ready_timeout_s)

    async def _spawn(self, managed: Managed) -> None:
        spec = managed.spec
        if spec.before_start:
            spec.before_start()
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        managed.proc = await asyncio.create_subprocess_exec(
            *spec.argv, cwd=str(spec.cwd) if spec.cwd else None, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True, **tie_to_parent(spec.stop_signal), **spec.spawn_kwargs,
        )
        managed.started_at = time.monotonic()
        managed.start_token = process_start(managed.proc.pid)
        managed.pump = asyncio.create_task(self._pump(managed, managed.proc))

    async def _wait_ready(self, managed: Managed, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert managed.spec.ready is not None
        while time.monotonic() < deadline:
            if managed.proc and managed.proc.returncode is not None and managed.restarts > 3:
                log = self.log_dir / (managed.spec.name + '.log')
                cause = last_error_line(log)
                raise RuntimeError(f"{managed.spec.name} keeps exiting (code {managed.proc.returncode})"
                                   f"{': ' + cause if cause else ''}; see {log}")
            with contextlib.suppress(Exception):
                if await managed.spec.ready():
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{managed.spec.name} did not become ready within {timeout_s:.0f}s; "
                           f"see {self.log_dir / (managed.spec.name + '.log')}")

    async def _pump(self, managed: Managed, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        name = managed.spec.name
        prefix = f"{self._label(name, self._color[name])} | "
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            if managed.log_file:
                # Stamped in the file (not on the console) so `stackwright logs --since` and the dashboard
                # can place every line in time, whatever the process itself logs.
                managed.log_file.write(stamp(text) + "\n")
            if self.echo:
                _write(sys.stdout, prefix + text)

    async def _watch(self, managed: Managed) -> None:
        delay = 0.5
        while True:
            assert managed.proc is not None
            code = await managed.proc.wait()
            if managed.stopping or not managed.spec.restart:
                return
            if time.monotonic() - managed.started_at > 30:
                delay = 0.5  # it ran fine for a while: this is a fresh crash, not a crash loop
            managed.restarts += 1
            self.event(f"{managed.spec.name} exited with code {code}; restarting in {delay:.1f}s "
                       f"(restart #{managed.restarts})", managed)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            if managed.stopping:
                return
            try:
                await self._spawn(managed)
            except Exception as exc:
                self.event(f"{managed.spec.name} could not be restarted: {exc}", managed)
                continue
            assert managed.proc is not None
            self.event(f"{managed.spec.name} restarted as pid {managed.proc.pid}", managed)

    def _label(self, name: str, color: str) -> str:
        """``name`` padded to the process-name column, in ``color`` (an SGR code such as ``1;31``) only when
        stdout shows colour (a terminal, or FORCE_COLOR): ``up > run.log`` holds no escape codes."""
        padded = f"{name:<{self._width}}"
        return f"\x1b[{color}m{padded}\x1b[0m" if term.colour(sys.stdout) else padded

    def event(self, message: str, about: Managed | None = None) -> None:
        """Report something the supervisor did (crash, restart) on the console and to the callback, and in
        the log file of the process it is ``about``, so that process's own log shows why it restarted."""
        _write(sys.stdout, f"{self._label('supervisor', '1;31')} | {message}")
        if about is not None and about.log_file is not None and not about.log_file.closed:
            about.log_file.write(stamp(f"[supervisor] {message}") + "\n")
        self.on_event(message)

    async def stop(self, name: str) -> None:
        managed = self.procs.get(name)
        if managed is None:
            return
        managed.stopping = True
        proc = managed.proc
        if proc and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(managed.spec.stop_signal)
            try:
                await asyncio.wait_for(proc.wait(), managed.spec.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if managed.watcher:
            managed.watcher.cancel()
        if managed.log_file:
            managed.log_file.close()

    def kill(self, name: str) -> None:
        """SIGKILL process ``name`` and its process group at once and never restart it (an outage, not a
        crash the supervisor heals). :meth:`stop` still tidies up after it."""
        managed = self.procs.get(name)
        if managed is None:
            return
        managed.stopping = True
        if managed.proc is not None and managed.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(managed.proc.pid, signal.SIGKILL)

    async def revive(self, name: str, *, ready_timeout_s: float = 60.0) -> None:
        """Start process ``name`` again as it was first started (after :meth:`kill` or :meth:`stop`) and wait
        until it is ready: a region brought back after an outage."""
        spec = self.procs[name].spec
        await self.stop(name)
        await self.start(spec, ready_timeout_s=ready_timeout_s)

    async def stop_all(self) -> None:
        """Stop in reverse start order: the gateway first, backing services last."""
        for name in reversed(list(self.procs)):
            await self.stop(name)


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError):
        pass


def last_error_line(log: Path, *, tail_bytes: int = 16384) -> str:
    """The last line of ``log`` naming an error or exception (else its last non-empty line), at most 300
    characters, or '' if the file cannot be read: a crash-looping process's cause in one line, so the
    message says why and not only where to look (the log may be gone when someone reads it, e.g. a CI
    run's temporary folder)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail_bytes))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    lines = [_STAMP.sub("", ln) for ln in lines]  # the log's own timestamps (logfiles.stamp) say nothing here
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else ""
