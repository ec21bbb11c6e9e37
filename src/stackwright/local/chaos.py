"""Fault drills on a locally running system: kill -9 a process while traffic flows, measure how long the
supervisor takes to bring it back, and check afterwards that nothing acknowledged was lost or doubled.

The machinery here is system-agnostic (killing processes named in the run's state, waiting for them to be
ready again, an open-loop sender, the result table). What "acknowledged" and "counted" mean is the
scenario's business: the system's ``drills.py`` plug-in provides a ``Drill`` class (:class:`Scenario`),
discovered through :mod:`stackwright.plugins`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

# The drills' open-loop sender is the benchmark's schedule (one implementation); re-exported for drills.py.
from ..bench.openloop import OpenLoop as OpenLoop
from ..bench.openloop import Outcome as Outcome
from ..resources import kind_of
from .state import read_state

BACKING = ("postgres", "redis")


class ChaosError(RuntimeError):
    """A drill could not be run (unknown fault, process missing, system not recovering)."""


# ---------------------------------------------------------------------------------------------- processes


def process_pid(state: dict[str, Any], target: str) -> int | None:
    """Current pid of a service (first replica) or backing process named ``target``, from the run's state."""
    if target in BACKING:
        return (state.get("backing", {}).get(target) or {}).get("pid")
    procs = state.get("services", {}).get(target) or []
    return procs[0].get("pid") if procs else None


def readiness_check(state: dict[str, Any], target: str) -> Callable[[], Awaitable[bool]]:
    """A check that is true once ``target`` serves again: /readyz for services, PING / SELECT 1 for backing."""
    if target == "redis":
        url = state["backing"]["redis"]["url"]

        async def redis_ready() -> bool:
            import redis.asyncio as aioredis

            client = aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
            try:
                return bool(await client.ping())
            finally:
                await client.aclose()

        return redis_ready
    if target == "postgres":
        url = state["backing"]["postgres"]["url"]

        async def pg_ready() -> bool:
            import asyncpg

            conn = await asyncpg.connect(url, timeout=1)
            try:
                return await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()

        return pg_ready
    procs = state.get("services", {}).get(target)
    if not procs:
        raise ChaosError(f"no process named {target!r} in this run (services: "
                         f"{', '.join(state.get('services', {}))}; backing: {', '.join(BACKING)})")
    ready_url = procs[0]["url"] + "/readyz"

    async def service_ready() -> bool:
        async with httpx.AsyncClient(timeout=1.0) as client:
            return (await client.get(ready_url)).status_code == 200

    return service_ready


@dataclass
class Recovery:
    """How one killed process came back."""

    target: str
    killed_pid: int
    new_pid: int | None = None
    killed_at: float = 0.0  # wall clock (time.time()) of the kill
    respawned_s: float | None = None  # kill -> supervisor started a new process
    ready_s: float | None = None  # kill -> the new process passes its readiness check


async def _try(check: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return bool(await check())
    except Exception:
        return False


async def kill_and_recover(system: str, state_root: Path | None, target: str, *, timeout_s: float = 60.0,
                           on_kill: Callable[[float], None] | None = None) -> Recovery:
    """``kill -9`` the process ``target`` and wait until the supervisor has it running and ready again."""
    state = read_state(system, state_root)
    if state is None:
        raise ChaosError(f"{system} is not running (no state file)")
    pid = process_pid(state, target)
    if not pid:
        raise ChaosError(f"{target} has no running process to kill")
    check = readiness_check(state, target)
    began = time.monotonic()
    rec = Recovery(target=target, killed_pid=pid, killed_at=time.time())
    os.kill(pid, signal.SIGKILL)
    if on_kill is not None:
        on_kill(rec.killed_at)
    deadline = began + timeout_s
    while time.monotonic() < deadline:
        now_state = read_state(system, state_root) or {}
        new_pid = process_pid(now_state, target)
        if rec.respawned_s is None and new_pid and new_pid != pid:
            rec.new_pid, rec.respawned_s = new_pid, time.monotonic() - began
        if rec.respawned_s is not None and await _try(check):
            rec.ready_s = time.monotonic() - began
            return rec
        await asyncio.sleep(0.05)
    raise ChaosError(f"{target} was not running and ready again {timeout_s:.0f}s after kill -9 of pid {pid}")


# ---------------------------------------------------------------------------------------------- load


# ---------------------------------------------------------------------------------------------- results


@dataclass
class DrillRow:
    """One line of the chaos table."""

    fault: str
    acknowledged: int = 0
    counted: int = 0
    lost: int = 0
    duplicated: int = 0
    failed: int = 0  # requests answered with an error (not acknowledged) while the fault lasted
    extra: int = 0  # counted although the client never saw the acknowledgement (answer lost in the crash)
    respawned_s: float | None = None  # kill -> the supervisor started a new process
    ready_s: float | None = None  # kill -> the new process passes its readiness check
    flow_s: float | None = None  # kill -> the first request sent after the kill is acknowledged and counted
    aggregates_ok: bool = True
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.aggregates_ok

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"ok": self.ok}


def _secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}s"


def render_table(rows: list[DrillRow], title: str = "kill -9 while requests flow") -> Any:
    """A rich Table of the drill rows: fault, acknowledged, counted, lost, duplicated, recovery times."""
    from rich.table import Table

    table = Table(title=title)
    columns = ("fault", "acknowledged", "counted", "lost", "duplicated", "process back", "ready",
               "flow resumes", "failed requests", "totals")
    for col in columns:
        table.add_column(col, justify="left" if col == "fault" else "right")
    for r in rows:
        bad = "" if r.ok else "[bold red]"
        table.add_row(r.fault, str(r.acknowledged), str(r.counted), f"{bad}{r.lost}", f"{bad}{r.duplicated}",
                      _secs(r.respawned_s), _secs(r.ready_s), _secs(r.flow_s), str(r.failed),
                      "match" if r.aggregates_ok else "[bold red]MISMATCH")
    return table


# ---------------------------------------------------------------------------------------------- scenarios


class Scenario(Protocol):
    """What a system's ``drills.py`` provides as ``Drill``: constructed as ``Drill(system, state, state_root)``.

    ``FAULTS`` are the processes it knows how to kill (the first ones are the default run); ``poison`` is
    optional (a system without queues has no poison messages to drill).
    """

    FAULTS: tuple[str, ...]

    async def run(self, faults: list[str], *, rate: float, report: Callable[[str], None]) -> list[DrillRow]: ...

    async def poison(self, report: Callable[[str], None], *, redrive: bool = True) -> dict[str, Any]: ...


def scenario_class(system: Any) -> Any:
    """The ``Drill`` class of the system's ``drills.py``; ChaosError when the system has none."""
    from ..plugins import PluginMissing, load_plugin

    try:
        drill = getattr(load_plugin(system, "drills"), "Drill", None)
    except PluginMissing as exc:
        raise ChaosError(f"{exc}; a system's fault drills are its drills.py plug-in (see stackwright.plugins)") \
            from None
    if drill is None:  # a drills.py may offer only the region drill's RegionLoad
        raise ChaosError(f"{system.name}'s drills.py has no Drill class: no fault drills for stackwright chaos")
    return drill


def check_faults(system: Any, faults: list[str]) -> None:
    """Raise ChaosError unless ``system`` has drills and every fault is one of them (before starting anything)."""
    known = scenario_class(system).FAULTS
    unknown = [f for f in faults if f not in known]
    if unknown or not faults:
        raise ChaosError(f"unknown fault(s) {', '.join(unknown) or '(none given)'} for {system.name} "
                         f"(choose from: {', '.join(known)})")


def scenario_for(system: Any, state: dict[str, Any], state_root: Path | None, **kw: Any) -> Scenario:
    """The drill scenario of ``system`` bound to a running copy of it."""
    return scenario_class(system)(system, state, state_root, **kw)  # type: ignore[no-any-return]


# Short enough that redeliveries (after a worker crash) and dead-lettering (N deliveries) take seconds.
DRILL_VISIBILITY_TIMEOUT_S = 2.0


def drill_up_args(system: Any, visibility_timeout_s: float = DRILL_VISIBILITY_TIMEOUT_S) -> list[str]:
    """Extra ``stackwright up`` arguments a drill run needs: short visibility timeouts on every queue."""
    return [a for name, res in system.resources.items() if kind_of(res).dead_letters
            for a in ("--visibility-timeout", f"{name}={visibility_timeout_s:g}")]
