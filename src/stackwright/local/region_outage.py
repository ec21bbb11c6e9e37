"""Region failover drill at the region level: the whole system in every region, clients through the global entry.

:func:`run_region_outage` starts a private copy of the system with every region of its spec (what
``stackwright up SYSTEM --regions`` runs: the primary region, a streaming Postgres replica, Redis, gateway and
services per other region, the global entry and the writer endpoint), on free ports under ``root``. A client
sends the system's own writes (its ``drills.py`` plug-in's ``RegionLoad``) through the global entry as a client
near the primary region would (``X-Region: <primary>``), recording every acknowledgement. Then:

1. the primary region is lost: every process of it (gateway, services, Redis, Postgres) is SIGKILLed at
   once and none is restarted (:meth:`~.regions.LocalRegions.kill_region`);
2. the global entry's health checks (the spec's interval and failure threshold, Route 53's) mark it unhealthy
   and send the client to the next region; the drill sees that on ``/_global/regions``;
3. the most advanced replica is promoted and the writer endpoint repointed
   (:meth:`~.regions.LocalRegions.promote`): the step an operator's runbook takes on AWS (an Aurora global
   failover), taken by the drill as soon as the entry declares the region down;
4. measured, all client-side: **RTO** from the first failed request to the first acknowledged one after it;
   **RPO** as the acknowledged writes missing from the promoted database (the plug-in looks them up) and the
   time span they cover; requests failed in the gap; requests with no answer at all (ambiguous, never
   counted as acknowledged);
5. fail-back (``failback=True``), with the load still flowing: the lost region comes back as a secondary
   (:meth:`~.regions.LocalRegions.revive`: its Postgres rewound to follow the promoted one, its processes
   restarted), the global entry's health checks route its clients back to it, and once its server has caught
   up a planned switchover returns the primary role to it (:meth:`~.regions.LocalRegions.switch_back`).
   Measured: the switch-back's **write gap** (last write acknowledged before the fence to the first one
   after it), the requests that failed during the fail-back, and the acknowledged writes missing from the
   primary region's database at the end (must be 0: a planned switchover loses nothing).

The plug-in's ``RegionLoad`` (see :class:`RegionLoad`) is constructed as ``RegionLoad(system, key_file)``,
``key_file`` being the run's dev identity provider key (to mint tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..http_client import async_client
from ..plugins import has_plugin, load_plugin
from ..spec import System
from .backing.replica import set_synchronous, slot_name
from .global_entry import REGION_HEADER, SERVED_BY_HEADER
from .ports import free_port
from .region_drill import CommitMode, DrillError, FailoverResult, Ledger, wait_caught_up
from .regions import LocalRegions
from .runner import LocalSystem, StartError, UpOptions

#: Acknowledged writes the drill waits for (at most 30 s past the warm-up) before it takes the region down.
MIN_ACKED_BEFORE_LOSS = 10


class RegionLoad(Protocol):
    """What a system's ``drills.py`` offers the region drill as ``RegionLoad(system, key_file)``."""

    #: Writes per second the drill sends unless ``--rate`` says otherwise (a heavy write wants fewer).
    RATE: float

    async def setup(self, client: httpx.AsyncClient) -> None:
        """Prepare the writes (e.g. create what they refer to) through the global entry."""

    async def write(self, client: httpx.AsyncClient, i: int) -> str | None:
        """Send write number ``i``; its key when the system acknowledged it (the write is durable by the
        system's contract), None when it refused it. Transport errors propagate (no answer: ambiguous)."""

    async def present(self, server_url: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` the Postgres server at ``server_url`` (the promoted primary) holds."""


async def present_ids(server_url: str, database: str, query: str, keys: list[str]) -> set[str]:
    """For a ``RegionLoad.present``: the first column, as text, of ``query`` (given ``keys`` as ``$1``) in
    ``database`` on the server at ``server_url``."""
    import asyncpg

    from ..runtime.db import database_url

    conn = await asyncpg.connect(database_url(server_url, database), timeout=5)
    try:
        return {str(r[0]) for r in await conn.fetch(query, keys)}
    finally:
        await conn.close()


def region_load_class(system: System) -> Callable[[System, Path], RegionLoad]:
    """The system's ``RegionLoad`` class (its drills.py); DrillError when it has none."""
    drills = load_plugin(system, "drills") if has_plugin(system, "drills") else None
    if drills is None or not hasattr(drills, "RegionLoad"):
        raise DrillError(f"{system.name} has no RegionLoad in its drills.py: the region drill needs the system's "
                         "own writes (use --scope database for the database-tier drill)")
    return drills.RegionLoad  # type: ignore[no-any-return]


class _Client:
    """Sends the load's writes at ``rate`` one after the other and keeps the ledger."""

    def __init__(self, load: RegionLoad, client: httpx.AsyncClient, rate: float) -> None:
        self.load = load
        self.client = client
        client.event_hooks["response"].append(self._seen)
        #: (monotonic time, region) of every 2xx answer, from the entry's X-Served-By-Region.
        self.served: list[tuple[float, str]] = []
        self.interval = 1.0 / rate
        self.ledger = Ledger()
        self.keys: dict[str, float] = {}  # key -> monotonic time of its acknowledgement
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _seen(self, response: httpx.Response) -> None:
        if response.is_success:
            self.served.append((time.monotonic(), response.headers.get(SERVED_BY_HEADER, "")))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        next_at = time.monotonic()
        for i in range(1, 10**9):
            if self._stop:
                return
            await self._one(i)
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _one(self, i: int) -> None:
        try:
            key = await self.load.write(self.client, i)
        except httpx.HTTPError:
            self.ledger.ambiguous.add(i)
            self.ledger.failures.append(time.monotonic())
            return
        now = time.monotonic()
        if key is None:
            self.ledger.failures.append(now)
        else:
            self.keys[key] = now
            self.ledger.acked[i] = now
            self.ledger.successes.append(now)


async def _entry_health(entry: str) -> dict[str, Any]:
    async with async_client(timeout=2) as c:
        return dict((await c.get(f"{entry}/_global/regions")).json()["regions"])


async def wait_entry_health(entry: str, region: str, healthy: bool, timeout_s: float) -> float | None:
    """Seconds until the global entry at ``entry`` reports ``region`` as ``healthy`` (None: not within
    ``timeout_s``)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            if (await _entry_health(entry))[region]["healthy"] is healthy:
                return time.monotonic() - began
        await asyncio.sleep(0.2)
    return None


async def start_regions(system: System, root: Path, *, interval_s: float | None, threshold: int | None,
                        report: Callable[[str], None]) -> LocalRegions:
    """Every region of ``system`` started under ``root`` on free ports, as ``up --regions`` starts them (the
    primary's run is ``.primary``; stop it to stop them all). DrillError when they do not start."""
    options = UpOptions(port=free_port(), state_root=root, echo_logs=False, dashboard=False, replication=True)
    primary = LocalSystem(system, options, report=lambda m: None)
    regions = LocalRegions(primary, report=lambda m: None, health_interval_s=interval_s,
                           failure_threshold=threshold)
    primary.before_stop.append(regions.stop)
    primary.extra_steps.append(("regions and global entry", regions.start))
    report(f"starting {len(system.regions)} regions of {system.name} (primary {system.primary_region.name}) …")
    started = time.monotonic()
    try:
        await primary.start()
    except StartError as exc:
        raise DrillError(f"the regions did not start: {exc}") from exc
    report(f"up in {time.monotonic() - started:.0f} s; global entry {regions.entry_url}, health checks "
           f"{regions.failure_threshold} x {regions.health_interval_s:g} s")
    return regions


async def run_region_outage(system: System, root: Path, *, commit: CommitMode, rate: float | None = None,
                            interval_s: float | None = None, threshold: int | None = None,
                            warmup_s: float = 3.0, recover_timeout_s: float = 180.0, failback: bool = True,
                            report: Callable[[str], None] = print) -> FailoverResult:
    """Start every region of ``system`` under ``root``, lose the primary region under load through the global
    entry, fail over, fail back (unless ``failback`` is False), and return what was measured. Stops everything
    it started."""
    if len(system.regions) < 2:
        raise DrillError(f"{system.name} has one region; a region failover needs a second one")
    load_class = region_load_class(system)  # before anything starts: a system without one is refused at once
    killed = system.primary_region.name
    regions = await start_regions(system, root, interval_s=interval_s, threshold=threshold, report=report)
    primary = regions.primary
    writer: _Client | None = None
    try:
        pg_url = primary.backing["postgres"]["url"]
        if commit == "sync":
            await set_synchronous(pg_url, [slot_name(r) for r in regions.replicas])
        load = load_class(system, primary.dir / "idp-key.pem")
        client = httpx.AsyncClient(base_url=regions.entry_url, headers={REGION_HEADER: killed}, timeout=10)
        await load.setup(client)
        writer = _Client(load, client, rate or float(getattr(load, "RATE", 10.0)))
        writer.start()
        await asyncio.sleep(warmup_s)
        # A slow write (payments' onboarding) on a busy machine: wait for a few acknowledgements, or the RPO
        # would be measured over next to nothing.
        until = time.monotonic() + 30
        while len(writer.keys) < MIN_ACKED_BEFORE_LOSS and time.monotonic() < until:
            await asyncio.sleep(0.2)
        lag_at_kill = await regions.lags()
        acked_before = len(writer.keys)
        killed_at = time.monotonic()
        names = regions.kill_region(killed)
        report(f"lost region {killed}: SIGKILL to {len(names)} processes ({', '.join(names)}) with "
               f"{acked_before} writes acknowledged; replica lag {lag_at_kill} bytes")
        # Detection is the global entry's: its health checks, at the spec's interval and threshold.
        detected = await wait_entry_health(regions.entry_url, killed, False, recover_timeout_s)
        if detected is None:
            raise DrillError(f"the global entry did not mark {killed} unhealthy in {recover_timeout_s:g} s")
        report(f"global entry: {killed} unhealthy after {detected:.1f} s; traffic goes to the next region")
        promoted = await regions.promote()
        report(f"promoted {promoted} ({time.monotonic() - killed_at:.1f} s after the loss); writer endpoint "
               "repointed")
        first_fail = next((t for t in writer.ledger.failures if t >= killed_at), None)
        first_ok = None
        while first_ok is None and time.monotonic() - killed_at < recover_timeout_s:
            await asyncio.sleep(0.1)
            first_fail = next((t for t in writer.ledger.failures if t >= killed_at), None)
            since = first_fail if first_fail is not None else killed_at
            first_ok = next((t for t in writer.ledger.successes if t > since), None)
        rto = None if first_ok is None else (first_ok - first_fail if first_fail is not None else 0.0)
        await asyncio.sleep(warmup_s)
        if not failback:
            await writer.stop()
        # The writes acknowledged so far, looked up in the promoted database (the load goes on for the fail-back).
        acked_now = dict(writer.keys)
        present = await load.present(regions.replicas[promoted].url, list(acked_now))
        lost = sorted((t, k) for k, t in acked_now.items() if k not in present)
        # The other regions' replicas still follow the lost primary: rebuild them on the promoted one and check
        # they then hold what it holds.
        refollowed = await regions.refollow()
        missing: dict[str, int] = {}
        for region, how in refollowed.items():
            if not how.startswith("failed"):
                await wait_caught_up(regions.replicas[region].url, regions.replicas[promoted].url)
                there = await load.present(regions.replicas[region].url, sorted(present))
                missing[region] = len(present - there)
        if refollowed:
            report(f"rebuilt to follow {promoted}: {refollowed}; acknowledged writes missing there: {missing}")
        span = (lost[-1][0] - lost[0][0] + writer.interval) if lost else 0.0
        failover_end = time.monotonic()
        back = await _fail_back(regions, writer, load, commit, {k for _t, k in lost}, report,
                                recover_timeout_s) if failback else {}
        await writer.stop()
        await client.aclose()
        result = FailoverResult(
            commit=commit, regions=[r.name for r in system.regions], killed=killed, promoted=promoted,
            health_check_interval_s=regions.health_interval_s,
            health_check_failure_threshold=regions.failure_threshold, detected_after_s=detected, rto_s=rto,
            failed_writes=sum(1 for t in writer.ledger.failures if killed_at <= t < failover_end),
            ambiguous_writes=len(writer.ledger.ambiguous), acked_before_kill=acked_before,
            lag_bytes_at_kill=lag_at_kill, lost_acked=len(lost), lost_span_s=span,
            acked_total=len(writer.keys), slo_rto_s=system.slo.rto_minutes * 60,
            slo_rpo_s=float(system.slo.rpo_seconds), scope="region", killed_processes=names,
            lost_after_kill=sum(1 for t, _k in lost if t >= killed_at), refollowed=refollowed,
            refollow_missing=missing, **back)
        report(f"RTO {'-' if rto is None else f'{rto:.2f}'} s, {result.failed_writes} failed requests, "
               f"{len(lost)} acknowledged writes lost")
        return result
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.stop()
        await primary.stop()


async def _fail_back(regions: LocalRegions, writer: _Client, load: RegionLoad, commit: CommitMode,
                     lost_at_failover: set[str], report: Callable[[str], None],
                     timeout_s: float) -> dict[str, Any]:
    """Step 5 of the drill, under the running load: revive the lost region, let the entry route its clients
    back, switch the primary role back, and check the ledger. Returns :class:`FailoverResult` fields."""
    home = regions.home_region
    began = time.monotonic()
    how = await regions.revive()
    report(f"fail-back: {home} rebuilt as a replica of {regions.primary_region} ({how}), its processes "
           f"restarted ({time.monotonic() - began:.1f} s)")
    healthy = await wait_entry_health(regions.entry_url, home, True, timeout_s)
    if healthy is None:
        raise DrillError(f"the global entry did not mark {home} healthy again in {timeout_s:g} s")
    switch = await regions.switch_back()
    if commit == "sync":  # the promoted server's settings came from the interim primary's (pg_rewind copies them)
        await set_synchronous(regions.primary_server()[1], [slot_name(r) for r in regions.replicas])
    report(f"switched back to {home}: links held {switch.held_s:.2f} s; rebuilt to follow it: {switch.rebuilt}")
    # Let writes flow through the restored primary region for a moment (the entry routes X-Region: home there).
    until = time.monotonic() + 30
    while time.monotonic() < until and not any(t > switch.held_at + switch.held_s and r == home
                                               for t, r in writer.served):
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    await writer.stop()
    expected = [k for k in writer.keys if k not in lost_at_failover]
    there = await load.present(regions.primary_server()[1], expected)
    before = [t for t in writer.ledger.successes if t < switch.held_at]
    after = [t for t in writer.ledger.successes if t >= switch.held_at]
    gap = (after[0] - before[-1]) if before and after else None
    last_region = writer.served[-1][1] if writer.served else None
    lost = len(set(expected) - there)
    report(f"fail-back: write gap {'-' if gap is None else f'{gap:.2f}'} s, "
           f"{sum(1 for t in writer.ledger.failures if t >= began)} failed requests, {lost} acknowledged writes "
           f"lost; last write served by {last_region}")
    return {"failback": how, "failback_pause_s": switch.held_s, "lost_after_failback": lost,
            "failback_gap_s": gap, "failback_failed_writes": sum(1 for t in writer.ledger.failures if t >= began),
            "failback_rebuilt": switch.rebuilt, "failback_served_by": last_region,
            "failback_s": time.monotonic() - began}


__all__ = ["RegionLoad", "present_ids", "region_load_class", "run_region_outage", "start_regions",
           "wait_entry_health"]
