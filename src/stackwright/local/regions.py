"""``stackwright up --regions``: every region of the spec on this machine, behind a local global entry.

The primary region is the ordinary run (:class:`~.runner.LocalSystem`, its Postgres prepared for streaming
standbys). Every other region then gets, under ``<state>/<system>/regions/<region>/``:

* a physical streaming replica of the primary's Postgres (:class:`~.backing.replica.LocalReplica`, its own
  slot), supervised by the primary's run;
* its own run of the system: its own Redis, gateway port and service processes. Its services write to the
  primary (``<R>_URL``, as on EKS where secondary regions write through the primary's endpoint) and a
  service that asks for a read pool (``svc.postgres(name, reads=True)``) reads the region's replica
  (``<R>_READ_URL``); ``REGION`` / ``REGION_ROLE`` say which region it plays. A standby region runs one
  process per service, like every local region: the warm-standby scale of one replica.
* the dev identity provider's key is the primary's, so a token minted once is valid in every region;
* kinds whose data AWS replicates to every region (``local_shared_across_regions``: secrets) use the primary's
  local store, so a standby reads values written before the primary region was lost.

The secondary and standby regions reach the primary's Postgres through their region's link, a local writer
endpoint (:mod:`.writer_endpoint`, Aurora Global Database's writer endpoint / the ``writer.`` failover record,
as seen from that region): their services write through it and their replica streams WAL through it. After
the primary region is lost, :meth:`LocalRegions.promote` promotes the most advanced replica and repoints every
link, and the surviving regions' services write there without a restart. Promotion is an operator's (or the
drill's) act, as on AWS, where an Aurora global failover is started by a person or a runbook; the traffic
shift is automatic (the global entry's health checks, Route 53's). A link can also be cut
(:meth:`LocalRegions.partition`): the region is then partitioned from the primary, its replica serves stale
reads and its writes fail, until :meth:`LocalRegions.heal`.

Fail-back after a region loss: :meth:`LocalRegions.revive` brings the lost primary region back as a secondary
(its Postgres rewound to follow the new primary, its Redis, services and gateway restarted, its services
writing through its link), and :meth:`LocalRegions.switch_back` returns the primary role to it in a planned
switchover (links held, the interim primary shut down cleanly so its last WAL reaches the standby, promote,
links repointed, the interim primary and the other replicas rebuilt to follow).

A global entry (:mod:`.global_entry`, Route 53's role) then health-checks each region's gateway at the
spec's ``edge.health_check_interval_s`` / ``health_check_failure_threshold`` and routes by the client's
``X-Region`` header. The run's state gets ``regions`` (role, gateway, Postgres URL per region) and
``global_entry`` (its URL), which ``status`` shows with the replication lag.

One region is the default (``stackwright up``, ``demo``): the regions triple the processes, which the
quick start and the test suite do not need; ``--regions`` asks for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..deploy import names as naming
from ..resources import kind_of
from ..runtime.db import database_url
from ..spec import start_order
from .backing.postgres import LocalPostgres
from .backing.replica import (
    LocalReplica,
    create_slot,
    lag,
    promote,
    rebuild_as_replica,
    received_lsn,
    slot_name,
)
from .ports import free_port
from .runner import LocalSystem, StartError, _http_ok, _pg_ready
from .supervisor import ProcessSpec
from .writer_endpoint import WriterEndpoint

#: Processes of the primary's run that are not the primary region's own: the other regions' replicas
#: (``postgres-<region>``) and the global entry. A region failure (:meth:`LocalRegions.kill_region`) spares them.
GLOBAL_PROCESSES = ("global-entry",)


@dataclass
class Switchover:
    """What :meth:`LocalRegions.switch_back` did: when the links were held (``time.monotonic()``), for how
    long (seconds: new writes waited, open connections were cut), and how each other region's replica was
    rebuilt to follow the primary region again (region -> ``pg_rewind``/``basebackup``/``failed: ...``)."""

    held_at: float
    held_s: float
    rebuilt: dict[str, str] = field(default_factory=dict)


def _port_of(url: str) -> int:
    """The port of a ``postgresql://user@host:port/db`` URL."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


class LocalRegions:
    """The regions besides the primary's run ``primary`` (started, with ``replication=True``)."""

    def __init__(self, primary: LocalSystem, *, entry_port: int | None = None,
                 report: Callable[[str], None] = print, health_interval_s: float | None = None,
                 failure_threshold: int | None = None) -> None:
        self.primary = primary
        self.system = primary.system
        self.report = report
        self.entry_port = entry_port or free_port()
        # The global entry's health checks: the spec's edge settings unless a drill asks for others.
        self.health_interval_s = (health_interval_s if health_interval_s is not None
                                  else float(self.system.edge.health_check_interval_s))
        self.failure_threshold = (failure_threshold if failure_threshold is not None
                                  else int(self.system.edge.health_check_failure_threshold))
        self.runs: dict[str, LocalSystem] = {}
        self.replicas: dict[str, LocalReplica] = {}
        # With --monitoring the primary's Prometheus scrapes the entry: region health and replication lag,
        # the series the ReplicationLagHigh rule fires on.
        primary.extra_scrape["global-entry"] = (f"127.0.0.1:{self.entry_port}", "/_global/metrics")
        #: Per region, its link to the writable Postgres (writes and WAL streaming go through it).
        self.links: dict[str, WriterEndpoint] = {}
        #: The region whose Postgres is the writable one (changes with :meth:`promote`).
        self.primary_region = self.system.primary_region.name
        #: The primary region's own server while it follows another (between :meth:`revive` and
        #: :meth:`switch_back`).
        self.home: LocalReplica | None = None
        self._killed: list[str] = []

    @property
    def home_region(self) -> str:
        """The spec's primary region (whose run is :attr:`primary`), whichever server is writable now."""
        return self.system.primary_region.name

    def primary_server(self) -> tuple[int, str]:
        """Port and URL of the writable Postgres now."""
        if self.primary_region == self.home_region:
            url = str(self.primary.backing["postgres"]["url"])
        else:
            url = self.replicas[self.primary_region].url
        return _port_of(url), url

    def _repoint(self, port: int, region: str) -> None:
        for link in self.links.values():
            link.repoint(port, region)

    @property
    def entry_url(self) -> str:
        """The global entry's URL."""
        return f"http://127.0.0.1:{self.entry_port}"

    async def lags(self) -> dict[str, int | None]:
        """WAL bytes each replica has not replayed yet (None: not measurable now)."""
        primary_url = self.primary_server()[1]
        out: dict[str, int | None] = {}
        following = {n: r for n, r in self.replicas.items() if n != self.primary_region}
        if self.home is not None:
            following[self.home_region] = self.home
        for name, replica in following.items():
            try:
                out[name] = (await lag(replica.url, primary_url)).bytes
            except Exception:  # a replica that does not answer has no lag to report
                out[name] = None
        return out

    @staticmethod
    def _health_url(run: LocalSystem) -> str:
        """The gateway's health check (the path Route 53 checks, :data:`naming.HEALTH_CHECK_PATH`): on its
        local-only admin port where the runner has one, else on ``/_edge/healthz`` of its public port."""
        admin = getattr(run, "gateway_admin_url", None)
        return f"{admin}{naming.HEALTH_CHECK_PATH}" if admin else f"{run.endpoints.gateway_url}/_edge/healthz"

    async def start(self) -> None:
        """Start each secondary/standby region, then the global entry; record them in the primary's state."""
        pg_backing = self.primary.backing.get("postgres") or {}
        if not pg_backing.get("data_dir"):
            raise StartError("--regions needs the embedded Postgres (not --postgres-url): each region streams "
                             "a replica of it")
        primary_port = _port_of(pg_backing["url"])
        for region in self.system.regions:
            link = self.links[region.name] = WriterEndpoint(primary_port)
            await link.start()
            link.target_region = self.primary_region
        # Regions start side by side (each clones its replica, then starts its own processes).
        await asyncio.gather(*(self._start_region(r.name, r.role) for r in self.system.regions
                               if r.name != self.system.primary_region.name))
        await self._start_entry()
        self._record()

    async def _start_region(self, name: str, role: str) -> None:
        home = self.primary.dir / "regions" / name
        home.mkdir(parents=True, exist_ok=True)
        link = self.links[name]
        # The clone and the stream go through the region's link, like its writes: a partition cuts all three.
        replica = LocalReplica(home / "postgres", free_port(), primary_port=link.port, region=name)
        cloned = await asyncio.to_thread(replica.init)
        if not cloned:  # a replica kept from an earlier run: the link listens on another port this time
            replica.follow(link.port)
        self.report(f"  {name}: {'cloned' if cloned else 'reusing'} a streaming replica of the primary's Postgres")
        await self._run_replica(name, replica)
        read_urls = self._read_urls(replica.url)
        opts = self.primary.options
        # Writes go through the writer endpoint (it follows a promotion), reads to the region's own replica.
        options = replace(opts, port=free_port(), postgres_url=_with_host(self.primary.backing["postgres"]["url"],
                                                                          link.url_host),
                          redis_url=None, monitoring=False, dashboard=False, dashboard_port=None,
                          state_root=home, region=name, replication=False, read_urls=read_urls,
                          shared_urls={r: self.primary.endpoints.resource_urls[r] for r, res in
                                       self.system.resources.items() if kind_of(res).local_shared_across_regions})
        run = LocalSystem(self.system, options, report=lambda m: self.report(f"  [{name}] {m}"))
        key = self.primary.dir / "idp-key.pem"
        if key.exists():
            shutil.copy2(key, run.dir / "idp-key.pem")
        await run.start()
        self.runs[name] = run
        self.report(f"✓ region {name} ({role}) at {run.endpoints.gateway_url}")

    def _read_urls(self, server_url: str) -> dict[str, str]:
        """Resource -> read URL on the Postgres at ``server_url`` for every resource that writes to the primary
        and reads a regional copy (Postgres kinds)."""
        read_urls = {}
        for rname, res in self.system.resources.items():
            if kind_of(res).writes_to_primary and "postgres" in kind_of(res).local_backing:
                # A per-tenant server's URL is the server's (tenants' databases are made at run time).
                read_urls[rname] = (server_url if getattr(res, "per_tenant", False)
                                    else database_url(server_url, getattr(res, "database", "postgres")))
        return read_urls

    def _process(self, region: str) -> str:
        """Supervisor name of region ``region``'s Postgres (the primary region's is the run's own)."""
        return "postgres" if region == self.home_region else f"postgres-{region}"

    async def _run_replica(self, name: str, replica: LocalReplica) -> None:
        """Start (or restart, after a rebuild) region ``name``'s replica under the primary's supervisor."""
        await self.primary.supervisor.start(ProcessSpec(
            name=self._process(name), argv=replica.command(), spawn_kwargs=replica.process_kwargs(),
            cwd=replica.data_dir, ready=lambda: _pg_ready(replica.url), before_start=replica.before_start,
            stop_signal=signal.SIGINT,  # fast shutdown: a smart one waits for the region's services' pools
        ), ready_timeout_s=90)
        if name == self.home_region:
            self.home = replica
        else:
            self.replicas[name] = replica

    async def _start_entry(self) -> None:
        regions = [{"name": self.system.primary_region.name, "role": "primary",
                    "url": self.primary.endpoints.gateway_url,
                    "health_url": self._health_url(self.primary)}]
        for r in self.system.regions:
            if r.name in self.runs:
                url = self.runs[r.name].endpoints.gateway_url
                regions.append({"name": r.name, "role": r.role, "url": url,
                                "health_url": self._health_url(self.runs[r.name])})
        replication: dict[str, Any] = {}
        for name, run in self.runs.items():
            for resource, url in run.options.read_urls.items():
                entry = replication.setdefault(resource, {"primary": self.primary.endpoints.resource_urls[resource],
                                                          "replicas": {}})
                entry["replicas"][name] = url
        config = {"port": self.entry_port, "system": self.system.name, "replication": replication,
                  "interval_s": self.health_interval_s, "failure_threshold": self.failure_threshold,
                  "regions": regions}
        path = self.primary.dir / "global-entry.json"
        path.write_text(json.dumps(config, indent=2))
        url = f"http://127.0.0.1:{self.entry_port}"
        await self.primary.supervisor.start(ProcessSpec(
            name="global-entry", argv=[sys.executable, "-m", "stackwright.local.global_entry", str(path)],
            ready=lambda: _http_ok(f"{url}/_global/regions")), ready_timeout_s=30)
        self.report(f"✓ global entry at {url} (X-Region: <region> picks a region)")

    def _record(self) -> None:
        """The regions in the run's state: spec role, gateway, Postgres, which region's server it follows now
        (None: the writable one), its link and whether that is cut."""
        home = self.home_region
        regions: dict[str, Any] = {home: {
            "role": "primary", "gateway": self.primary.endpoints.gateway_url,
            "postgres": self.primary.backing["postgres"]["url"]}}
        for name, run in self.runs.items():
            role = next(r.role for r in self.system.regions if r.name == name)
            regions[name] = {"role": role, "gateway": run.endpoints.gateway_url, "postgres": self.replicas[name].url,
                             "state_dir": str(run.dir)}
        for name, r in regions.items():
            link = self.links.get(name)
            r.update(replica_of=None if name == self.primary_region else self.primary_region,
                     link=link.url_host if link else None, partitioned=bool(link and link.is_cut))
        self.primary.extra_state.update(regions={n: regions[n] for n in self._order(regions)},
                                        global_entry=f"http://127.0.0.1:{self.entry_port}",
                                        writable_region=self.primary_region)
        self.primary._save()

    def _order(self, regions: dict[str, Any]) -> list[str]:
        return [r.name for r in self.system.regions if r.name in regions]

    def kill_region(self, region: str) -> list[str]:
        """Lose ``region`` as an outage would: SIGKILL every process of it at once (gateway, services, its
        Redis and Postgres), none restarted. The global entry and the other regions' replicas, which the
        primary's run also supervises, are spared. Returns the names of the processes killed."""
        if region == self.system.primary_region.name:
            sup = self.primary.supervisor
            names = [n for n in sup.procs if n not in GLOBAL_PROCESSES
                     and not any(n == f"postgres-{r}" for r in self.replicas)]
        else:
            sup = self.runs[region].supervisor
            names = list(sup.procs)
            if f"postgres-{region}" in self.primary.supervisor.procs:
                self.primary.supervisor.kill(f"postgres-{region}")
        for name in names:
            sup.kill(name)
        if region == self.home_region:
            self._killed = names
        return names

    async def promote(self) -> str:
        """Promote the most advanced live replica (greatest received WAL position) to primary and point the
        writer endpoint at it; the surviving regions' services write there from their next connection.
        Returns the promoted region. The other replicas keep following the lost primary (they serve reads,
        stale from the moment of the loss) until they are rebuilt."""
        positions: dict[str, int] = {}
        for name, replica in self.replicas.items():
            with contextlib.suppress(Exception):  # a replica that does not answer is no candidate
                positions[name] = await received_lsn(replica.url)
        if not positions:
            raise StartError("no live replica to promote")
        chosen = max(positions, key=lambda r: positions[r])
        await promote(self.replicas[chosen].url)
        self._repoint(self.replicas[chosen].port, chosen)
        self.primary_region = chosen
        self._record()
        self.report(f"promoted the {chosen} replica; every region's writer endpoint leads there")
        return chosen

    async def refollow(self) -> dict[str, str]:
        """After :meth:`promote`: make every other live replica a replica of the new primary (``pg_rewind``,
        a fresh base backup if that fails), restarted on its port, so its region's reads are fresh again.
        Returns region -> how it was rebuilt, or the error that kept it from being rebuilt."""
        out: dict[str, str] = {}
        for name, replica in list(self.replicas.items()):
            if name == self.primary_region or f"postgres-{name}" not in self.primary.supervisor.pids():
                continue
            out[name] = await self._rebuild(name, replica)
        return out

    async def _rebuild(self, name: str, replica: LocalPostgres) -> str:
        """Rebuild region ``name``'s server ``replica`` (stopped here first) to follow the writable one through
        the region's link, and start it again. Returns ``pg_rewind``, ``basebackup`` or ``failed: ...``."""
        try:
            await create_slot(self.primary_server()[1], slot_name(name))
            await self.primary.supervisor.stop(self._process(name))
            rebuilt, how = await asyncio.to_thread(rebuild_as_replica, replica, new_primary_port=self.links[name].port,
                                                   region=name)
            await self._run_replica(name, rebuilt)
            how = how.split(" (")[0]
        except Exception as exc:  # one region that cannot be rebuilt is a finding, not the end of the run
            how = f"failed: {type(exc).__name__}: {exc}"
        self.report(f"{name}: replica of {self.primary_region} now ({how})")
        return how

    async def revive(self) -> str:
        """Bring the lost primary region back as a secondary after :meth:`promote`: its Postgres rebuilt to follow
        the writable one (``pg_rewind``, a base backup if that fails; through its link), then every other process
        :meth:`kill_region` killed started again, the gateway last (the global entry routes clients back once
        its health checks pass, and the services must be there by then). Its services now write through the
        region's link and read from its own server. Returns how the server was rebuilt."""
        home = self.home_region
        if self.primary_region == home:
            raise StartError(f"{home} holds the writable database: there is nothing to fail back")
        backing = self.primary.backing["postgres"]
        old = LocalPostgres(self.primary.dir / "postgres", _port_of(backing["url"]))
        old.data_dir = Path(backing["data_dir"])
        how = await self._rebuild(home, old)
        if how.startswith("failed") or self.home is None:
            raise StartError(f"{home}'s Postgres could not be rebuilt as a replica: {how}")
        # Writes through the region's link (it leads to the writable server), reads on its own server.
        read_urls = self._read_urls(self.home.url)
        urls = self.primary.endpoints.resource_urls
        for rname in read_urls:
            urls[rname] = _with_host(urls[rname], self.links[home].url_host)
        self.primary.options = replace(self.primary.options, region=home, read_urls=read_urls)
        sup = self.primary.supervisor
        labels = {(n if len(u) == 1 else f"{n}-{i + 1}"): n
                  for n, u in self.primary.endpoints.service_urls.items() for i in range(len(u))}
        others = [n for n in self._killed if n != "postgres" and n not in labels]
        for name in [n for n in others if n != "gateway"]:
            await sup.revive(name, ready_timeout_s=60)
        for svc in start_order(self.system):
            killed = [label for label, s in labels.items() if s == svc and label in self._killed]
            for label in killed:
                await sup.stop(label)  # tidy the killed process's log before its replacement opens it
            if killed:
                await self.primary._start_service(svc)
        if "gateway" in others:
            await sup.revive("gateway", ready_timeout_s=30)
        self._killed = []
        self._record()
        self.report(f"{home} is back as a replica of {self.primary_region} ({how}); its processes restarted")
        return how

    async def switch_back(self) -> Switchover:
        """Planned switchover to the primary region after :meth:`revive`, losing no acknowledged write: wait until
        its server has caught up, hold every link (open connections cut, new ones wait: nothing reaches the
        interim primary from then on), shut the interim primary down cleanly (a fast shutdown sends every WAL
        record to the connected standbys first), promote the primary region's server, repoint the links (the
        held connections go there), then rebuild the interim primary and the other replicas to follow it."""
        from .region_drill import wait_caught_up

        home, interim = self.home_region, self.primary_region
        if self.home is None:
            raise StartError(f"{home} is not following {interim}: revive() it first")
        await wait_caught_up(self.home.url, self.primary_server()[1], timeout_s=120)
        held_at = time.monotonic()
        for link in self.links.values():
            link.hold()
        try:
            await self.primary.supervisor.stop(self._process(interim))
            await promote(self.home.url)
        except Exception:
            for link in self.links.values():
                link.release()  # back to the interim primary (if it still runs), not stuck forever
            raise
        server, self.home = self.home, None
        self._repoint(server.port, home)
        held_s = time.monotonic() - held_at
        self.primary_region = home
        self.report(f"switched back: {home} is writable again (links held {held_s:.2f} s)")
        rebuilt = {interim: await self._rebuild(interim, self.replicas[interim])}
        rebuilt.update(await self.refollow())
        self._record()
        return Switchover(held_at=held_at, held_s=held_s, rebuilt=rebuilt)

    def partition(self, region: str) -> None:
        """Cut region ``region`` off from the writable Postgres at the network level: its link resets open
        connections and refuses new ones, so its replica's WAL stream and its services' writes both break
        (reads on its replica go on, stale). Undo with :meth:`heal`."""
        if region == self.primary_region:
            raise StartError(f"{region} holds the writable database; partition a region that follows it")
        self.links[region].cut()
        self._record()

    def heal(self, region: str) -> None:
        """End :meth:`partition`: the link forwards again; the replica reconnects (within
        ``wal_retrieve_retry_interval``, 5 s) and catches up from its slot."""
        self.links[region].heal()
        self._record()

    async def stop(self) -> None:
        """Stop every secondary region's run (the primary's run stops the replicas and the entry)."""
        for run in self.runs.values():
            with contextlib.suppress(Exception):
                await run.stop()
        for link in self.links.values():
            await link.close()


def _with_host(url: str, host_port: str) -> str:
    """``url`` (postgresql://user@host:port/db) with its ``host:port`` replaced by ``host_port``."""
    scheme, rest = url.split("://", 1)
    userinfo, _, after = rest.rpartition("@")
    path = after[after.index("/"):] if "/" in after else ""
    return f"{scheme}://{userinfo + '@' if userinfo else ''}{host_port}{path}"


async def region_status(state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per region of a running multi-region system: role, gateway, and for a replica its lag
    (WAL bytes not replayed, seconds behind) and whether it streams. Empty for a one-region run."""
    regions = state.get("regions") or {}
    primary_url = next((r["postgres"] for r in regions.values() if r["replica_of"] is None), None)
    rows = []
    # The primary first (the state file may store keys sorted).
    for name, r in sorted(regions.items(), key=lambda kv: kv[1]["replica_of"] is not None):
        row = {"region": name, "role": r["role"], "gateway": r["gateway"], "postgres": r["postgres"],
               "lag_bytes": None, "lag_seconds": None, "streaming": None, "partitioned": bool(r.get("partitioned"))}
        if r["replica_of"] is not None:
            try:
                got = await lag(r["postgres"], primary_url)
                row.update(lag_bytes=got.bytes, lag_seconds=got.seconds, streaming=got.streaming)
            except Exception as exc:  # a down replica is a status to show, not an error
                row["error"] = type(exc).__name__
        rows.append(row)
    return rows


__all__ = ["LocalRegions", "region_status"]
