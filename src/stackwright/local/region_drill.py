"""Region failover drill on one machine: one real Postgres per region of the spec, the primary streaming
to a hot standby in every other region; writes flow while the primary region is killed.

What is measured (:class:`FailoverResult`):

* **RTO**: from the first write that failed to the first write acknowledged by the promoted region;
* **RPO**: acknowledged writes missing after failover, counted against the client-side ledger of every
  acknowledgement (a write whose connection died before its acknowledgement is *ambiguous*, never
  counted as acknowledged), plus the time span those lost writes cover;
* **failed writes**: attempts that got an error during the gap.

Detection follows the spec's health checks (``edge.health_check_interval_s`` x
``edge.health_check_failure_threshold``, as a Route 53 health check does): the primary region is declared
down after that many consecutive failed checks, then the most advanced standby (greatest received WAL
position) is promoted, the other standbys follow it, and writers are repointed. Fail-back then rebuilds
the old primary as a standby of the new one (``pg_rewind``, a base backup when rewinding is impossible),
lets it catch up, and switches back in a planned switchover (writes paused, the interim primary shut
down cleanly so its last WAL reaches the standby, promote, rewind the interim one), after which every
acknowledged write must still be there.

Commit mode: ``sync`` makes each commit on the primary wait until one standby has flushed it
(``synchronous_standby_names = ANY 1 (...)``), so a promoted standby has every acknowledged write;
``async`` acknowledges after the local flush only, so writes acknowledged in the last moments before the
kill can be missing from the standby (the replication lag at the instant of the kill).

This drill covers the database tier of a region (its Postgres); the processes a region runs besides are
the subject of ``stackwright chaos``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg

from .backing.postgres import LocalPostgres
from .backing.replica import (
    LocalReplica,
    create_slot,
    lag,
    promote,
    rebuild_as_replica,
    received_lsn,
    replication_conf,
    set_synchronous,
    slot_name,
    without_socket,
)
from .ports import free_port

CommitMode = Literal["sync", "async"]


class DrillError(RuntimeError):
    """The drill could not run (a server did not start, a step failed); the message says which."""


@dataclass
class RegionServer:
    """One region's Postgres, run by the drill itself (not supervised: a killed region must stay dead)."""

    region: str
    pg: LocalPostgres
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.pg.url

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.pg.before_start()
        with self.log.open("ab") as out:
            # Own session: killing the region kills the postmaster and every backend at once.
            self.proc = subprocess.Popen(without_socket(self.pg.command()), stdout=out, stderr=subprocess.STDOUT,
                                         cwd=str(self.pg.data_dir), start_new_session=True,
                                         **self.pg.process_kwargs())  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DrillError(f"{self.region}: postgres exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                conn = await asyncpg.connect(self.url, timeout=1)
                await conn.close()
                return
            await asyncio.sleep(0.1)
        raise DrillError(f"{self.region}: postgres not ready in {timeout_s:g} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL the whole region (postmaster and every backend), as a region outage would."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Clean (fast) shutdown: SIGINT; the walsenders hand every WAL record to connected standbys first."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Ledger:
    """The client's record: every write it sent, and which were acknowledged (committed)."""

    acked: dict[int, float] = field(default_factory=dict)  # id -> monotonic time of its acknowledgement
    ambiguous: set[int] = field(default_factory=set)  # sent, connection lost before the answer
    failures: list[float] = field(default_factory=list)  # monotonic times of failed attempts
    successes: list[float] = field(default_factory=list)


class Writer:
    """Writes one ledger row per tick to whichever server :attr:`target` names; records the outcome.

    ``pause()`` holds writes (a planned switchover) without failing them.
    """

    def __init__(self, target: str, rate: float) -> None:
        self.target = target
        self.interval = 1.0 / rate
        self.ledger = Ledger()
        self._ids = itertools.count(1)
        self._running = asyncio.Event()
        self._running.set()
        self._stop = False
        self._conn: asyncpg.Connection | None = None
        self._conn_target: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    def repoint(self, target: str) -> None:
        self.target = target

    async def pause(self) -> None:
        """Hold further writes and wait for the one in flight to be answered: after this every
        acknowledged write is in the primary's WAL, so a standby caught up with it has them all."""
        self._running.clear()
        while self._busy:
            await asyncio.sleep(0.01)

    def resume(self) -> None:
        self._running.set()

    async def stop(self) -> None:
        self._stop = True
        self._running.set()
        if self._task is not None:
            await self._task
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop:
            await self._running.wait()
            if self._stop:
                break
            self._busy = True
            try:
                await self._write_one()
            finally:
                self._busy = False
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _write_one(self) -> None:
        wid = next(self._ids)
        sent = False
        try:
            if self._conn is None or self._conn_target != self.target or self._conn.is_closed():
                await self._drop()
                self._conn = await asyncpg.connect(self.target, timeout=1)
                self._conn_target = self.target
            sent = True
            await self._conn.execute("INSERT INTO drill_ledger (id) VALUES ($1)", wid, timeout=2)
        except Exception:  # any error (refused, reset, timeout, protocol state) means: not acknowledged
            if sent:
                self.ledger.ambiguous.add(wid)
            self.ledger.failures.append(time.monotonic())
            await self._drop()
            return
        now = time.monotonic()
        self.ledger.acked[wid] = now
        self.ledger.successes.append(now)


@dataclass
class FailoverResult:
    """What one drill measured. Times in seconds; ``lost_*`` against the client-side ledger."""

    commit: CommitMode
    regions: list[str]
    killed: str
    promoted: str
    health_check_interval_s: float
    health_check_failure_threshold: int
    detected_after_s: float
    rto_s: float | None
    failed_writes: int
    ambiguous_writes: int
    acked_before_kill: int
    lag_bytes_at_kill: dict[str, int | None]
    lost_acked: int
    lost_span_s: float
    acked_total: int = 0
    failback: str = ""
    failback_pause_s: float | None = None
    lost_after_failback: int | None = None
    slo_rto_s: float | None = None
    slo_rpo_s: float | None = None
    #: "database" (this module: the region's Postgres only) or "region" (:mod:`.region_outage`: every process
    #: of the region, clients through the global entry).
    scope: str = "database"
    killed_processes: list[str] = field(default_factory=list)
    #: Writes acknowledged after the loss (so by the promoted database) and missing from it: must be 0.
    lost_after_kill: int | None = None
    #: Region scope: the other replicas, rebuilt to follow the promoted one: region -> method (or failure),
    #: and how many of the promoted database's acknowledged writes each lacks once caught up (must be 0).
    refollowed: dict[str, str] = field(default_factory=dict)
    refollow_missing: dict[str, int] = field(default_factory=dict)
    #: Region scope fail-back: seconds from the last write acknowledged before the switch-back's fence to the
    #: first one after it; requests failed from the lost region's revival to the end; how each other region's
    #: server was rebuilt to follow the primary region again; which region served the last write (the
    #: primary region once the global entry routes its clients back); seconds the whole fail-back took.
    failback_gap_s: float | None = None
    failback_failed_writes: int | None = None
    failback_rebuilt: dict[str, str] = field(default_factory=dict)
    failback_served_by: str | None = None
    failback_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def verdicts(self) -> list[tuple[str, bool]]:
        """(what, met) for the spec's SLO and the drill's invariants."""
        out = []
        if self.slo_rto_s is not None:
            out.append((f"RTO {self.rto_s:.1f} s <= slo {self.slo_rto_s:g} s",
                        self.rto_s is not None and self.rto_s <= self.slo_rto_s))
        if self.slo_rpo_s is not None:
            out.append((f"RPO {self.lost_span_s:.2f} s of acknowledged writes <= slo {self.slo_rpo_s:g} s",
                        self.lost_span_s <= self.slo_rpo_s))
        if self.commit == "sync":
            out.append(("synchronous commit: no acknowledged write lost", self.lost_acked == 0))
        if self.lost_after_kill is not None:
            out.append(("every write acknowledged after the loss is in the promoted database",
                        self.lost_after_kill == 0))
        for region, how in self.refollowed.items():
            out.append((f"{region} rebuilt to follow {self.promoted} ({how}) and holds every acknowledged write",
                        not how.startswith("failed") and self.refollow_missing.get(region) == 0))
        if self.lost_after_failback is not None:
            out.append(("fail-back: every write acknowledged since failover kept",
                        self.lost_after_failback == 0))
        for region, how in self.failback_rebuilt.items():
            out.append((f"fail-back: {region} rebuilt to follow {self.killed} ({how})", not how.startswith("failed")))
        if self.failback_served_by is not None:
            out.append((f"fail-back: the last write was served by {self.killed} again "
                        f"(by {self.failback_served_by})", self.failback_served_by == self.killed))
        return out


async def _ids(url: str) -> set[int]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return {r["id"] for r in await conn.fetch("SELECT id FROM drill_ledger")}
    finally:
        await conn.close()


async def _healthy(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=1)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        await conn.fetchval("SELECT 1", timeout=1)
        return True
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def wait_caught_up(replica_url: str, primary_url: str, timeout_s: float = 60.0) -> None:
    """Wait until the standby at ``replica_url`` streams and has replayed the primary's WAL up to where it
    was when the wait began (writes may keep flowing: exactly zero lag may never be seen under load)."""
    conn = await asyncpg.connect(primary_url, timeout=5)
    try:
        target = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await conn.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            rep = await asyncpg.connect(replica_url, timeout=3)
            try:
                done = await rep.fetchval(
                    "SELECT (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') > 0"
                    " AND pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target)
            finally:
                await rep.close()
            if done:
                return
        await asyncio.sleep(0.1)
    raise DrillError(f"standby {replica_url} did not catch up with {primary_url} in {timeout_s:g} s")


class RegionCluster:
    """One Postgres per region under ``root``: the first region primary, the others its standbys."""

    def __init__(self, root: Path, regions: list[str]) -> None:
        if len(regions) < 2:
            raise DrillError("a region failover needs at least two regions in the spec")
        self.root = root
        self.regions = regions
        self.servers: dict[str, RegionServer] = {}
        self.primary = regions[0]
        self.commit: CommitMode = "async"

    def standbys(self) -> list[str]:
        return [r for r in self.regions if r != self.primary and self._alive(r)]

    def _alive(self, region: str) -> bool:
        s = self.servers.get(region)
        return s is not None and s.proc is not None and s.proc.poll() is None

    async def start(self, commit: CommitMode) -> None:
        """Initialise and start the primary, clone and start every standby, set the commit mode."""
        self.root.mkdir(parents=True, exist_ok=True)
        first = self.regions[0]
        pg = LocalPostgres(self.root / first / "pgdata", free_port())
        await asyncio.to_thread(pg.init)
        replication_conf(pg)
        self.servers[first] = RegionServer(first, pg, self.root / f"{first}.log")
        await self.servers[first].start()
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS drill_ledger (id bigint PRIMARY KEY,"
                               " at timestamptz NOT NULL DEFAULT now())")
        finally:
            await conn.close()
        for region in self.regions[1:]:
            rep = LocalReplica(self.root / region / "pgdata", free_port(), primary_port=pg.port, region=region)
            await asyncio.to_thread(rep.init)
            self.servers[region] = RegionServer(region, rep, self.root / f"{region}.log")
            await self.servers[region].start()
        for region in self.regions[1:]:
            await wait_caught_up(self.servers[region].url, pg.url)
        self.commit = commit
        await self._apply_commit_mode()

    async def _apply_commit_mode(self) -> None:
        names = [slot_name(r) for r in self.standbys()] if self.commit == "sync" else []
        await set_synchronous(self.servers[self.primary].url, names)

    def url(self, region: str) -> str:
        return self.servers[region].url

    async def lags(self) -> dict[str, int | None]:
        """WAL bytes each standby is behind the primary (None: unreachable)."""
        out: dict[str, int | None] = {}
        for region in self.standbys():
            try:
                out[region] = (await lag(self.url(region), self.url(self.primary))).bytes
            except (TimeoutError, OSError, asyncpg.PostgresError):
                out[region] = None
        return out

    async def fail_over(self) -> str:
        """Promote the most advanced live standby; the others follow it. Returns the promoted region."""
        candidates = self.standbys()
        if not candidates:
            raise DrillError("no live standby to promote")
        positions = {r: await received_lsn(self.url(r)) for r in candidates}
        chosen = max(candidates, key=lambda r: positions[r])
        await promote(self.url(chosen))
        self.primary = chosen
        for region in candidates:
            if region != chosen:
                await self._refollow(region)
        # The dead primary is no standby: commits wait only for standbys that are there.
        await self._apply_commit_mode()
        return chosen

    async def _refollow(self, region: str) -> None:
        server = self.servers[region]
        await create_slot(self.url(self.primary), slot_name(region))
        server.stop()
        replica, _how = await asyncio.to_thread(rebuild_as_replica, server.pg,
                                                new_primary_port=self.servers[self.primary].pg.port, region=region)
        server.pg = replica
        await server.start()

    async def rebuild(self, region: str) -> str:
        """Make the (stopped) ``region`` a standby of the current primary and start it; returns the method."""
        server = self.servers[region]
        await create_slot(self.url(self.primary), slot_name(region))
        replica, how = await asyncio.to_thread(rebuild_as_replica, server.pg,
                                               new_primary_port=self.servers[self.primary].pg.port, region=region)
        server.pg = replica
        await server.start()
        await wait_caught_up(self.url(region), self.url(self.primary))
        return how

    async def switch_over(self, to: str) -> None:
        """Planned switchover to the caught-up standby ``to``: stop the primary cleanly, promote ``to``, make
        the old primary its standby (nothing acknowledged is lost: a clean stop ships all WAL first)."""
        old = self.primary
        await wait_caught_up(self.url(to), self.url(old))
        self.servers[old].stop()
        await promote(self.url(to))
        self.primary = to
        for region in self.regions:
            if region not in (to, old) and self._alive(region):
                await self._refollow(region)
        await self.rebuild(old)
        await self._apply_commit_mode()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


async def run_failover(root: Path, regions: list[str], *, commit: CommitMode, interval_s: float,
                       threshold: int, rate: float = 50.0, warmup_s: float = 2.0, failback: bool = True,
                       slo_rto_s: float | None = None, slo_rpo_s: float | None = None,
                       report: Callable[[str], None] = print) -> FailoverResult:
    """Run the whole drill under ``root`` (fresh data) and return what it measured. Stops every server."""
    cluster = RegionCluster(root, regions)
    writer: Writer | None = None
    try:
        report(f"starting {len(regions)} regions: primary {regions[0]}, standbys {', '.join(regions[1:])} "
               f"({commit} commit)")
        await cluster.start(commit)
        writer = Writer(cluster.url(cluster.primary), rate)
        writer.start()
        await asyncio.sleep(warmup_s)
        killed = cluster.primary
        lag_at_kill = await cluster.lags()
        acked_before = len(writer.ledger.acked)
        report(f"killing region {killed} (postmaster and every backend, SIGKILL) with {acked_before} writes "
               f"acknowledged; standby lag {lag_at_kill} bytes")
        killed_at = time.monotonic()
        cluster.servers[killed].kill()
        # Health checks as Route 53 runs them: every interval, down after `threshold` consecutive failures.
        failures = 0
        while failures < threshold:
            await asyncio.sleep(interval_s)
            failures = 0 if await _healthy(cluster.url(killed)) else failures + 1
        detected = time.monotonic() - killed_at
        report(f"health check: {killed} down after {threshold} failed checks every {interval_s:g} s "
               f"({detected:.1f} s)")
        promoted = await cluster.fail_over()
        writer.repoint(cluster.url(promoted))
        report(f"promoted {promoted}; writers repointed")
        # RTO: first failed write after the kill to the first acknowledged write after that failure (a write
        # acknowledged right as the kill landed is not the recovery).
        first_fail = next((t for t in writer.ledger.failures if t >= killed_at), None)
        first_ok_after = None
        deadline = time.monotonic() + 60
        while first_ok_after is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            since = first_fail if first_fail is not None else killed_at
            first_ok_after = next((t for t in writer.ledger.successes if t > since), None)
        rto = None
        if first_ok_after is not None:
            rto = first_ok_after - first_fail if first_fail is not None else 0.0
        await asyncio.sleep(warmup_s)
        present = await _ids(cluster.url(promoted))
        acked_then = {i: t for i, t in writer.ledger.acked.items() if t < killed_at}
        lost = sorted(i for i in acked_then if i not in present)
        span = (acked_then[lost[-1]] - acked_then[lost[0]] + writer.interval) if lost else 0.0
        result = FailoverResult(
            commit=commit, regions=regions, killed=killed, promoted=promoted, health_check_interval_s=interval_s,
            health_check_failure_threshold=threshold, detected_after_s=detected, rto_s=rto,
            failed_writes=sum(1 for t in writer.ledger.failures if t >= killed_at),
            ambiguous_writes=len(writer.ledger.ambiguous), acked_before_kill=acked_before,
            lag_bytes_at_kill=lag_at_kill, lost_acked=len(lost), lost_span_s=span,
            slo_rto_s=slo_rto_s, slo_rpo_s=slo_rpo_s)
        report(f"RTO {rto if rto is None else round(rto, 2)} s, {result.failed_writes} failed writes, "
               f"{len(lost)} acknowledged writes lost")
        if failback:
            result.failback = await cluster.rebuild(killed)
            report(f"fail-back: {killed} rebuilt as a standby of {promoted} ({result.failback}) and caught up")
            await writer.pause()
            paused = time.monotonic()
            await cluster.switch_over(killed)
            writer.repoint(cluster.url(killed))
            writer.resume()
            result.failback_pause_s = time.monotonic() - paused
            report(f"switched back to {killed} (writes paused {result.failback_pause_s:.1f} s)")
            await asyncio.sleep(warmup_s)
            await writer.stop()
            final = await _ids(cluster.url(killed))
            since = [i for i, t in writer.ledger.acked.items() if t >= killed_at]
            result.lost_after_failback = sum(1 for i in since if i not in final)
        else:
            await writer.stop()
        result.acked_total = len(writer.ledger.acked)
        return result
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.stop()
        await asyncio.to_thread(cluster.stop)
