"""Network partition of one region from the primary (issue 15's chaos): the region keeps running, cut off.

:func:`run_partition` starts a private copy of the system with every region of its spec (as
``stackwright up SYSTEM --regions``), then cuts one non-primary region's link to the writable Postgres
(:meth:`~.regions.LocalRegions.partition`): the link is the only way that region reaches the primary, for its
replica's WAL stream and for its services' writes alike, so the cut is a partition at the network level (the
link resets open connections and refuses new ones, as a rejecting firewall between the regions would), not a
setting changed on the replica. While the region is cut off, the system's own writes (its ``drills.py``
plug-in's ``RegionLoad``) go on through the primary region, and the drill checks, client-side:

* **reads stay served** in the partitioned region from its replica, stale: a key written before the cut is
  read there (only when the plug-in's ``RegionLoad`` has ``read(client, key) -> bool``);
* **the lag is reported, growing**: WAL bytes and seconds the replica is behind, sampled the way ``status``
  and the global entry's ``stackwright_replication_lag_*`` metrics measure them, and the entry's metric itself;
* **writes sent to the partitioned region fail cleanly**: every answer is counted by status; a refusal must be
  ``application/problem+json``, and any write that was acknowledged must be in the primary's database after
  the heal (none acknowledged and then lost);

then heals the link and measures how long the replica takes to catch up, and that the region reads the writes
made during the partition and accepts writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..http_client import async_client
from ..runtime.problems import PROBLEM_JSON
from ..spec import System
from .backing.replica import lag
from .global_entry import REGION_HEADER
from .region_drill import DrillError, wait_caught_up
from .region_outage import region_load_class, start_regions


@dataclass
class PartitionResult:
    """What one partition drill saw. Times in seconds; ``lag`` samples are ``{"t", "bytes", "seconds",
    "streaming"}`` dicts (``t`` from the cut)."""

    region: str
    partition_s: float
    primary_writes_acked: int = 0
    region_answers: dict[str, int] = field(default_factory=dict)
    region_writes_acked: int = 0
    region_refusals_not_problem_json: int = 0
    region_acked_missing: int | None = None
    reads_tried: int = 0
    reads_served: int = 0
    stale_reads: int = 0
    lag: list[dict[str, Any]] = field(default_factory=list)
    metric_lag_bytes_max: float | None = None
    caught_up_after_s: float | None = None
    fresh_read_after_heal: bool | None = None
    region_write_after_heal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def verdicts(self) -> list[tuple[str, bool]]:
        """(what, met) for the drill's invariants."""
        during = [s for s in self.lag if s["bytes"] is not None]
        out = [
            ("the replica fell behind while cut off (lag bytes grew)",
             len(during) >= 2 and during[-1]["bytes"] > during[0]["bytes"] and during[-1]["bytes"] > 0),
            ("the replica's WAL stream was down while cut off", any(not s["streaming"] for s in self.lag)),
            ("writes sent to the partitioned region: refusals are problem+json",
             self.region_refusals_not_problem_json == 0 and sum(self.region_answers.values()) > 0),
            ("no write acknowledged by the partitioned region is lost", not self.region_acked_missing),
            ("the replica caught up after the heal", self.caught_up_after_s is not None),
            ("the region accepts writes again after the heal", self.region_write_after_heal),
        ]
        if self.reads_tried:
            out.append(("reads stay served in the partitioned region (stale)", self.reads_served == self.reads_tried))
        if self.fresh_read_after_heal is not None:
            out.append(("after the heal the region reads what was written during the partition",
                        self.fresh_read_after_heal))
        return out


class _Answers:
    """Response hook: counts the answers a client got, by status (and refusals that are not problem+json)."""

    def __init__(self) -> None:
        self.by_status: dict[str, int] = {}
        self.not_problem = 0

    async def __call__(self, response: httpx.Response) -> None:
        key = str(response.status_code)
        self.by_status[key] = self.by_status.get(key, 0) + 1
        if response.status_code >= 400 and response.headers.get("content-type", "").split(";")[0] != PROBLEM_JSON:
            self.not_problem += 1


async def _metric_lag_bytes(entry: str, region: str) -> float | None:
    """The global entry's ``stackwright_replication_lag_bytes`` for ``region`` (max over resources)."""
    from ..monitoring import conventions as c

    async with async_client(timeout=3) as client:
        text = (await client.get(f"{entry}/_global/metrics")).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(c.REPLICATION_LAG_BYTES + "{") and f'region="{region}"' in line]
    return max(values) if values else None


async def run_partition(system: System, root: Path, *, region: str | None = None, seconds: float = 6.0,
                        interval_s: float | None = None, threshold: int | None = None,
                        report: Callable[[str], None] = print) -> PartitionResult:
    """Start every region of ``system`` under ``root``, cut ``region`` (default: the first secondary, else the
    first non-primary region) off from the primary for ``seconds`` under the system's own writes, heal, and
    return what was seen. Stops everything it started."""
    others = [r for r in system.regions if r.name != system.primary_region.name]
    if not others:
        raise DrillError(f"{system.name} has one region; a partition needs a second one")
    chosen = next((r for r in others if r.name == region), None) if region else \
        next((r for r in others if r.role == "secondary"), others[0])
    if chosen is None:
        raise DrillError(f"{region} is not a non-primary region of {system.name}: "
                         f"{', '.join(r.name for r in others)}")
    load_class = region_load_class(system)
    regions = await start_regions(system, root, interval_s=interval_s, threshold=threshold, report=report)
    home = system.primary_region.name
    result = PartitionResult(region=chosen.name, partition_s=seconds)
    answers = _Answers()
    # A client near the region: through the entry (X-Region) unless the region is a standby, which the entry
    # never routes to while it is healthy; then its own gateway, its regional endpoint.
    base = regions.entry_url if chosen.role != "standby" else regions.runs[chosen.name].endpoints.gateway_url
    near_home = httpx.AsyncClient(base_url=regions.entry_url, headers={REGION_HEADER: home}, timeout=10)
    near_region = httpx.AsyncClient(base_url=base, headers={REGION_HEADER: chosen.name}, timeout=10)
    reader = httpx.AsyncClient(base_url=base, headers={REGION_HEADER: chosen.name}, timeout=10)  # reads, uncounted
    try:
        load = load_class(system, regions.primary.dir / "idp-key.pem")
        read = getattr(load, "read", None)
        await load.setup(near_home)
        primary_url = regions.primary_server()[1]
        replica_url = regions.replicas[chosen.name].url
        before = [k for i in range(3) if (k := await load.write(near_home, i)) is not None]
        if not before:
            raise DrillError("no write was acknowledged before the partition")
        await wait_caught_up(replica_url, primary_url)
        regions.partition(chosen.name)
        cut_at = time.monotonic()
        report(f"partitioned {chosen.name} from {home}: its link resets and refuses connections")
        during: list[str] = []
        region_acked: list[str] = []
        i = 1000
        near_region.event_hooks["response"].append(answers)
        while time.monotonic() - cut_at < seconds:
            i += 1
            if (k := await load.write(near_home, i)) is not None:
                during.append(k)
            try:
                if (k := await load.write(near_region, i + 500_000)) is not None:
                    region_acked.append(k)
            except httpx.HTTPError:
                answers.by_status["no answer"] = answers.by_status.get("no answer", 0) + 1
            if read is not None:
                result.reads_tried += 1
                with contextlib.suppress(httpx.HTTPError):
                    result.reads_served += bool(await read(reader, before[0]))
            with contextlib.suppress(Exception):  # a sample that cannot be taken is just missing
                got = await lag(replica_url, primary_url)
                result.lag.append({"t": round(time.monotonic() - cut_at, 2), "bytes": got.bytes,
                                   "seconds": got.seconds, "streaming": got.streaming})
            with contextlib.suppress(httpx.HTTPError, ValueError, IndexError):
                metric = await _metric_lag_bytes(regions.entry_url, chosen.name)
                if metric is not None:
                    result.metric_lag_bytes_max = max(result.metric_lag_bytes_max or 0.0, metric)
            await asyncio.sleep(0.25)
        near_region.event_hooks["response"].remove(answers)
        if read is not None and during:
            with contextlib.suppress(httpx.HTTPError):
                result.stale_reads = int(not await read(reader, during[-1]))
        last = result.lag[-1] if result.lag else {}
        report(f"while cut off ({seconds:g} s): {len(during)} writes acknowledged through {home}; writes through "
               f"{chosen.name} answered {answers.by_status}; reads served there {result.reads_served}/"
               f"{result.reads_tried}; lag {last.get('bytes')} B / {last.get('seconds')} s, streaming "
               f"{last.get('streaming')}")
        regions.heal(chosen.name)
        healed_at = time.monotonic()
        await wait_caught_up(replica_url, primary_url, timeout_s=60)
        result.caught_up_after_s = time.monotonic() - healed_at
        if read is not None and during:
            result.fresh_read_after_heal = bool(await read(reader, during[-1]))
        until = time.monotonic() + 15  # the services' pools reconnect on their next use
        while not result.region_write_after_heal and time.monotonic() < until:
            with contextlib.suppress(httpx.HTTPError):
                if (k := await load.write(near_region, i + 900_000)) is not None:
                    region_acked.append(k)
                    result.region_write_after_heal = True
            if not result.region_write_after_heal:
                await asyncio.sleep(0.5)
        result.primary_writes_acked = len(during)
        result.region_answers = answers.by_status
        result.region_refusals_not_problem_json = answers.not_problem
        result.region_writes_acked = len(region_acked) - int(result.region_write_after_heal)
        there = await load.present(primary_url, region_acked)
        result.region_acked_missing = len(set(region_acked) - there)
        report(f"healed: caught up in {result.caught_up_after_s:.2f} s; fresh read there "
               f"{result.fresh_read_after_heal}; write through {chosen.name} again {result.region_write_after_heal}")
        return result
    finally:
        await near_home.aclose()
        await near_region.aclose()
        await reader.aclose()
        await regions.primary.stop()


__all__ = ["PartitionResult", "run_partition"]
