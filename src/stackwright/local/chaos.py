"""Fault drills on a locally running system: kill -9 a process while traffic flows, measure how long the
supervisor takes to bring it back, and check afterwards that nothing acknowledged was lost or doubled.

The machinery here is system-agnostic (killing processes named in the run's state, waiting for them to be
ready again, an open-loop sender, the result table). What "acknowledged" and "counted" mean is the
scenario's business: the system's ``drills.py`` plug-in provides a ``Drill`` class (:class:`Scenario`),
discovered through :mod:`stackwright.plugins`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# The drills' open-loop sender is the benchmark's schedule (one implementation); re-exported for drills.py.
from ..bench.openloop import OpenLoop as OpenLoop
from ..bench.openloop import Outcome as Outcome
from ..http_client import async_client
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
    ready_url = (procs[0].get("platform_url") or procs[0]["url"]) + "/readyz"

    async def service_ready() -> bool:
        async with async_client(timeout=1.0) as client:
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


async def kill_mid_flow(system: str, state_root: Path | None, target: str, report: Callable[[str], None], *,
                        warmup_s: float, tail_s: float, timeout_s: float = 60.0) -> tuple[Recovery | None, str | None]:
    """The middle of a drill phase while the caller's load flows: wait ``warmup_s``, ``kill -9`` ``target``
    and wait for it to be back (:func:`kill_and_recover`), then let the load run ``tail_s`` more. Returns
    (the recovery, None) or (None, the reason) when it did not come back; progress goes to ``report``."""
    await asyncio.sleep(warmup_s)
    report(f"kill -9 {target} …")
    try:
        rec = await kill_and_recover(system, state_root, target, timeout_s=timeout_s)
    except ChaosError as exc:
        report(f"  [red]{exc}")
        return None, str(exc)
    report(f"  {target} back as pid {rec.new_pid}: respawned in {rec.respawned_s:.2f}s, ready in {rec.ready_s:.2f}s")
    await asyncio.sleep(tail_s)
    return rec, None


class FlowDrill:
    """Common ground of a system's drills that kill processes while requests flow (its ``Drill`` subclasses this).

    Holds the running copy (``state`` from ``start_detached``), its dev identity provider (``idp``), a run id
    for names no other run uses, the timings (seconds), and ``phases`` (one per fault, the subclass's own
    type, each with a ``recovery`` attribute). The subclass provides ``wait_for_flow(phase)``.
    """

    def __init__(self, system: Any, state: dict[str, Any], state_root: Path | None, *,
                 key_file: Path | None = None, warmup_s: float = 2.0, tail_s: float = 1.5,
                 recover_timeout_s: float = 60.0, drain_timeout_s: float = 90.0) -> None:
        from .demokit import idp_for
        from .state import system_dir

        self.system = system
        self.state = state
        self.state_root = state_root
        self.base = state["gateway"]
        self.db_url = state["resources"]["db"]
        self.idp = idp_for(system, key_file or system_dir(system, state_root) / "idp-key.pem")
        self.run_id = uuid.uuid4().hex[:8]
        self.warmup_s = warmup_s
        self.tail_s = tail_s
        self.recover_timeout_s = recover_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.phases: list[Any] = []

    FAULTS: tuple[str, ...] = ()

    def check_faults(self, faults: list[str]) -> None:
        """ChaosError unless every fault is one of ``FAULTS``."""
        unknown = [f for f in faults if f not in self.FAULTS]
        if unknown:
            raise ChaosError(f"unknown fault(s) {', '.join(unknown)} ({self.system.name} drills: "
                             f"{', '.join(self.FAULTS)})")

    async def wait_for_flow(self, phase: Any) -> None:
        """Until a request sent after the kill (``phase.recovery.killed_at``) has gone through; ChaosError if
        none does within ``recover_timeout_s``."""
        raise NotImplementedError

    async def kill_phase(self, phase: Any, fault: str, report: Callable[[str], None]) -> None:
        """While the caller's requests flow: ``warmup_s``, kill -9 of ``fault``, its recovery (into
        ``phase.recovery``), ``wait_for_flow(phase)``, then ``tail_s`` more. ChaosError if it does not recover."""
        await asyncio.sleep(self.warmup_s)
        report(f"kill -9 {fault} …")
        phase.recovery = await kill_and_recover(self.system.name, self.state_root, fault,
                                                timeout_s=self.recover_timeout_s)
        report(f"  {fault} back as pid {phase.recovery.new_pid}: respawned in {phase.recovery.respawned_s:.2f}s, "
               f"ready in {phase.recovery.ready_s:.2f}s")
        await self.wait_for_flow(phase)
        await asyncio.sleep(self.tail_s)

    async def flow_and_kill(self, phase: Any, fault: str, rate: float, request: Callable[[int], Awaitable[Any]],
                            report: Callable[[str], None], alongside: Awaitable[None] | None = None) -> None:
        """``request(i)`` at ``rate`` per second (open loop; outcomes into ``phase.outcomes``) while
        :meth:`kill_phase` runs, plus ``alongside`` (a fault's own traffic, awaited after the recovery). A
        ChaosError ends up in ``phase.error``; the phase is appended to ``phases``."""
        sender = OpenLoop(rate, request)
        phase.outcomes = sender.outcomes
        sending = asyncio.create_task(sender.run())
        extra = asyncio.ensure_future(alongside) if alongside is not None else None
        try:
            await self.kill_phase(phase, fault, report)
            if extra is not None:
                await extra
        except ChaosError as exc:
            phase.error = str(exc)
            report(f"  [red]{exc}")
        finally:
            sender.stop()
            await sending
            if extra is not None and not extra.done():
                extra.cancel()
                with contextlib.suppress(BaseException):
                    await extra
        self.phases.append(phase)


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
