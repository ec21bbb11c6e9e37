"""Capacity at the SLO peak: replicas per service and region, nodes per node group, limits of fronting services.

Method (every assumption here is also printed in the document):

* Regional peak = ``slo.peak_rps`` x the region's ``traffic_share`` (regions without one split what is left
  evenly; a ``standby`` region without one takes none).
* Demand per service: a routed service takes its ``slo.peak_mix`` share of the regional peak, or all of
  it when the mix does not name it (conservative); a ``web`` service behind the CDN gets only cache misses
  (:data:`CDN_MISS_RATIO`). A called service gets its callers' demand (one call per request); a queue
  consumer gets its producers' demand (one message per request).
* Replicas needed = ceil(demand / (per-replica throughput x target utilisation)). The target is the
  service's HPA CPU target (what the autoscaler will actually hold at the peak), else :data:`HEADROOM`.
* Nodes per node group: pod requests (plus cluster add-ons on the default pool) against the usable
  allocatable of the group's first instance type, by CPU, memory and pod slots, whichever binds first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..deploy import scale
from ..deploy.environments import default_environment
from ..deploy.network import layout
from ..resources import kind_of
from ..resources import queue as _queue
from ..resources import redis as _redis
from ..spec import System
from ..spec.accelerators import gpus_per_pod
from .errors import PlanError
from .instances import DAEMONSET_OVERHEAD, instance_type
from .model import CapacityReport, Finding, LegendRow, LimitCheck, PoolCapacity, ServiceCapacity
from .store_limits import postgres_connections, redis_clients, redis_memory
from .throughput import BenchResults, own_metric, throughput

HEADROOM = 0.7
CDN_MISS_RATIO = 0.01
# Kept for importers: the figures live with their kinds.
REDIS_OPS_PER_SHARD = _redis.REDIS_OPS_PER_SHARD
SQS_FIFO_MSGS = _queue.SQS_FIFO_MSGS
#: Requests of cluster add-ons on the default pool: CoreDNS x2, AWS LB controller x2, metrics-server,
#: External Secrets x3, KEDA x2; with monitoring.prometheus also Prometheus (+operator) and Grafana.
ADDONS = (900, 1_600, 10)
ADDONS_PROMETHEUS = (700, 2_600, 3)


def region_shares(system: System) -> dict[str, float]:
    """Share of the SLO peak each region serves in normal operation."""
    given = {r.name: r.traffic_share for r in system.regions if r.traffic_share is not None}
    rest = [r.name for r in system.regions if r.traffic_share is None and r.role != "standby"]
    left = max(0.0, 1.0 - sum(given.values()))
    shares = {r.name: 0.0 for r in system.regions}
    shares.update({name: share for name, share in given.items() if share is not None})
    for name in rest:
        shares[name] = left / len(rest)
    return shares


def queue_consumers(system: System, queue: str) -> list[str]:
    """Services that consume a queue (scale on it, or are workers that use it)."""
    return sorted(n for n, s in system.services.items()
                  if queue in s.uses and ((s.autoscale and s.autoscale.queue == queue) or s.kind == "worker"))


def queue_producers(system: System, queue: str) -> list[str]:
    """Services that put messages on a queue (use it without consuming it)."""
    consumers = set(queue_consumers(system, queue))
    return sorted(n for n, s in system.services.items() if queue in s.uses and n not in consumers)


def default_pool(system: System) -> str:
    """The node group a service without ``node_pool`` runs on: the first non-GPU group."""
    pools = system.cluster.node_pools
    return next((p.name for p in pools if not p.gpu), pools[0].name)


def service_demand(system: System, region_peak: float) -> dict[str, tuple[float, str]]:
    """Requests (or messages) per second each service must handle at the regional peak, and why."""
    unknown = sorted(set(system.slo.peak_mix) - set(system.services))
    if unknown:
        raise PlanError(f"slo.peak_mix names '{unknown[0]}', which is not a declared service")
    memo: dict[str, tuple[float, str]] = {}
    visiting: set[str] = set()

    def routed(name: str) -> tuple[float, str]:
        svc = system.services[name]
        if not svc.routes:
            return 0.0, ""
        if name in system.slo.peak_mix:
            share = system.slo.peak_mix[name]
            return region_peak * share, f"{share:.0%} of the regional peak (slo.peak_mix)"
        if svc.kind == "web" and system.edge.cdn:
            return (region_peak * CDN_MISS_RATIO,
                    f"behind the CDN: {CDN_MISS_RATIO:.0%} of the regional peak reaches the origin (assumed)")
        return region_peak, "routed: sized for the full regional peak (slo.peak_mix does not split it)"

    def total(name: str) -> tuple[float, str]:
        if name in memo:
            return memo[name]
        if name in visiting:
            raise PlanError(f"service '{name}' is fed by a loop of calls/queues; plan cannot size it")
        visiting.add(name)
        rps, basis = routed(name)
        parts = [basis] if basis else []
        for caller, svc in sorted(system.services.items()):
            if name in svc.calls:
                rps += total(caller)[0]
                parts.append(f"calls from {caller} (1 per request)")
        for queue in sorted(system.services[name].uses):
            res = system.resources[queue]
            if name in kind_of(res).consumed_by(system, queue, res):
                rate = sum(total(p)[0] for p in queue_producers(system, queue))
                rps += rate / len(queue_consumers(system, queue))
                parts.append(f"messages from queue {queue} (1 per producer request)")
        visiting.discard(name)
        memo[name] = (rps, "; ".join(parts) or "no traffic path from the edge: runs its minimum")
        return memo[name]

    return {name: total(name) for name in system.services}


def target_utilisation(system: System, service: str) -> float:
    """Utilisation the autoscaler holds: the HPA CPU target, else :data:`HEADROOM`; 100% of the per-replica
    figure for a service scaled on a metric of its own, whose per-replica figure is that target."""
    if own_metric(system, service) is not None:
        return 1.0
    auto = system.services[service].autoscale
    if auto is not None and auto.cpu_percent:
        return auto.cpu_percent / 100
    return HEADROOM


def _nodes(pool_type: str, load: Mapping[str, int], system: System, with_addons: bool,
           services: list[str]) -> tuple[int, int, int, int]:
    """Nodes needed for ``load`` (replicas per service), and the CPU, memory and pods requested."""
    it = instance_type(pool_type)
    cpu = sum(load[s] * system.services[s].resources.cpu_m for s in services)
    mem = sum(load[s] * system.services[s].resources.memory_mi for s in services)
    pods = sum(load[s] for s in services)
    if with_addons:
        extra = [ADDONS] + ([ADDONS_PROMETHEUS] if system.monitoring.prometheus else [])
        cpu += sum(e[0] for e in extra)
        mem += sum(e[1] for e in extra)
        pods += sum(e[2] for e in extra)
    nodes = max(1, math.ceil(cpu / it.usable_cpu_m), math.ceil(mem / it.usable_memory_mib),
                math.ceil(pods / it.usable_pods))
    gpus = sum(load[s] * gpus_per_pod(system.services[s]) for s in services)
    if gpus and it.gpus:  # a GPU is never shared between pods: whole GPUs per node
        nodes = max(nodes, math.ceil(gpus / it.gpus))
    return nodes, int(cpu), int(mem), pods


def _legend(system: System, environment: str) -> list[LegendRow]:
    regions = [r.name for r in system.regions]
    primary = system.primary_region.name
    rows: list[LegendRow] = []

    def row(component: str, cell: dict[str, str]) -> None:
        rows.append(LegendRow(component, tuple((r, cell[r]) for r in regions)))

    gw = system.edge.api_gateway
    row("API Gateway", {r: f"{gw.rps_limit / 1000:g}k RPS" if gw else "none" for r in regions})
    for pool in system.cluster.node_pools:
        types = "/".join(pool.instance_types)
        spot = ", spot" if pool.capacity == "spot" else ""
        row(f"EKS Node Group ({pool.name})",
            {r: "{}-{} nodes".format(*scale.node_pool(system, r, pool.name)[::2]) + f" ({types}{spot})"
             for r in regions})
    for name in system.services:
        row(f"{name.capitalize()} Service Replicas",
            {r: "{}-{} pods".format(*scale.replicas(system, r, environment, name)) for r in regions})
    for name, res in system.resources.items():
        legend = kind_of(res).legend_row(system, name, res, regions=regions, primary=primary)
        if legend is not None:
            row(*legend)
    return rows


def build_capacity(system: System, bench: BenchResults | None,
                   environment: str | None = None) -> tuple[CapacityReport, list[Finding]]:
    """Capacity of every region at the SLO peak for one environment (default: the default environment),
    and the shortfalls as findings. Replica ranges and node-group sizes per region are the deployed ones
    (:mod:`stackwright.deploy.scale`), so a standby region is sized at its standby scale."""
    env = environment or default_environment(system)
    shares = region_shares(system)
    findings: list[Finding] = []
    total_share = sum(shares.values())
    if not math.isclose(total_share, 1.0, abs_tol=1e-6):
        findings.append(Finding("medium", "capacity", f"regions' traffic_share adds up to {total_share:.2f}, not 1",
                                "regions", "make the shares of the regions that serve traffic sum to 1"))
    peaks = {r: system.slo.peak_rps * s for r, s in shares.items()}
    services: list[ServiceCapacity] = []
    pools: list[PoolCapacity] = []
    limits: list[LimitCheck] = []
    demands: dict[str, dict[str, float]] = {}
    tputs = {name: throughput(system, name, bench) for name in system.services}
    home = default_pool(system)
    pool_of = {name: svc.node_pool or home for name, svc in system.services.items()}

    for region in system.regions:
        demand = service_demand(system, peaks[region.name])
        ranges = {name: scale.replicas(system, region.name, env, name) for name in system.services}
        for name, svc in system.services.items():
            rps, basis = demand[name]
            tp, target = tputs[name], target_utilisation(system, name)
            low, high = ranges[name]
            needed = max(low, math.ceil(rps / (tp.rps_per_replica * target) - 1e-9) if rps else 0)
            metric = own_metric(system, name)
            if metric is not None:
                # Scaled on what it carries (e.g. streams), not requests: size it the way its autoscaler will.
                at_peak = metric.peak * shares[region.name]
                needed = max(low, math.ceil(at_peak / metric.target - 1e-9))
                rps, basis = at_peak, (f"{at_peak:g} {metric.name} at the peak / {metric.target:g} per replica "
                                       f"(autoscale.metric.peak)")
            sc = ServiceCapacity(region.name, name, svc.kind, rps, basis, tp, target, needed, low, high)
            services.append(sc)
        by_service = {s.service: s for s in services if s.region == region.name}
        for pool in system.cluster.node_pools:
            members = sorted(n for n in system.services if pool_of[n] == pool.name)
            first = pool.instance_types[0]
            it = instance_type(first)
            addons = pool.name == home
            for n in members:
                r = system.services[n].resources
                if r.cpu_m > it.usable_cpu_m or r.memory_mi > it.usable_memory_mib:
                    findings.append(Finding("high", "capacity",
                                            f"one {n} pod requests more than a {first} node can give",
                                            f"services.{n}.resources", "use a larger instance type"))
            mins = {n: ranges[n][0] for n in members}
            peak = {n: by_service[n].replicas_at_peak for n in members}
            uncapped = {n: by_service[n].replicas_needed for n in members}
            maxes = {n: ranges[n][1] for n in members}
            pool_min, pool_desired, pool_max = scale.node_pool(system, region.name, pool.name)
            n_min = _nodes(first, mins, system, addons, members)[0]
            n_peak, cpu, mem, pods = _nodes(first, peak, system, addons, members)
            n_uncapped = _nodes(first, uncapped, system, addons, members)[0]
            n_max = _nodes(first, maxes, system, addons, members)[0]
            pc = PoolCapacity(region.name, pool.name, first, pool_min, pool_max, pool_desired,
                              it.usable_cpu_m, it.usable_memory_mib, it.usable_pods, n_min, n_peak, n_uncapped,
                              n_max, cpu, mem, pods)
            pools.append(pc)
            if n_peak > pool.max:
                findings.append(Finding(
                    "high", "capacity",
                    f"node group {pool.name} in {region.name} needs {n_peak} x {first} at the peak but max is "
                    f"{pool.max}", f"cluster.node_pools.{pool.name}.max", f"raise max to {n_peak}"))
            elif n_max > pool.max:
                findings.append(Finding(
                    "medium", "capacity",
                    f"node group {pool.name} in {region.name} cannot hold every service at replicas.max "
                    f"({n_max} x {first} needed, max {pool.max})", f"cluster.node_pools.{pool.name}.max",
                    f"raise max to {n_max} or lower replicas.max"))
        limits += _limits(system, region.name, peaks[region.name], demand, findings)
        demands[region.name] = {name: rps for name, (rps, _) in demand.items()}
    findings += _shortfalls(system, services)
    limits += postgres_connections(system, findings)
    limits += redis_clients(system, findings)
    limits += redis_memory(system, demands, peaks, findings)
    limits += _ip_limits(system, findings)
    report = CapacityReport(
        peak_rps=system.slo.peak_rps, region_peaks=peaks,
        headroom=(f"replicas are sized so each runs at its HPA CPU target at the peak (else {HEADROOM:.0%}); "
                  "the rest is headroom for bursts and for losing an AZ"),
        services=services, pools=pools, limits=limits, legend=_legend(system, env),
        notes=[
            f"per node, DaemonSets are assumed to request {DAEMONSET_OVERHEAD[0]}m CPU, "
            f"{DAEMONSET_OVERHEAD[1]} MiB and {DAEMONSET_OVERHEAD[2]} pod slots",
            f"cluster add-ons on the '{home}' node group: {ADDONS[0]}m CPU, {ADDONS[1]} MiB"
            + (f" plus in-cluster Prometheus/Grafana {ADDONS_PROMETHEUS[0]}m, {ADDONS_PROMETHEUS[1]} MiB"
               if system.monitoring.prometheus else ""),
            "a node group with several instance types is sized on its first one",
            *_store_notes(system),
        ])
    return report, findings


def _store_notes(system: System) -> list[str]:
    """What the capacity section does and does not check about the system's own data stores (none named that
    the system does not have)."""
    pgs = [r for r in system.resources.values() if r.kind == "postgres"]
    managed = [r for r in pgs if r.engine != "external"]
    checked = (["PostgreSQL connections"] if managed else []) + \
        (["Redis clients and memory"] if any(r.kind == "redis" for r in system.resources.values()) else [])
    notes = []
    if pgs:
        notes.append("database write throughput (transactions/s) is not assessed: nothing in bench/RESULTS.md "
                     f"measures {'Aurora/RDS' if managed else 'the external database'}")
    if checked:
        notes.append(f"{' and '.join(checked)} are checked against the stores' limits")
    return notes


def _limits(system: System, region: str, peak: float, demand: dict[str, tuple[float, str]],
            findings: list[Finding]) -> list[LimitCheck]:
    out: list[LimitCheck] = []
    gw = system.edge.api_gateway
    if gw is not None:
        check = LimitCheck(region, "API Gateway", float(gw.rps_limit), "rps", peak, "regional peak (edge.api_gateway)")
        out.append(check)
        util = check.utilisation or 0.0
        if util > 1:
            findings.append(Finding("high", "capacity",
                                    f"API Gateway in {region} is limited to {gw.rps_limit:,} rps; the regional peak "
                                    f"is {peak:,.0f} rps", "edge.api_gateway.rps_limit",
                                    "ask AWS for a higher throttle and raise rps_limit, or shift traffic_share"))
        elif util >= 0.9:
            findings.append(Finding("medium", "capacity",
                                    f"API Gateway in {region} runs at {util:.0%} of its {gw.rps_limit:,} rps limit at "
                                    "the peak: no headroom for bursts", "edge.api_gateway.rps_limit",
                                    "raise the throttle to keep ~20% headroom"))
    for name, res in sorted(system.resources.items()):
        checks, found = kind_of(res).limit_checks(system, name, res, region=region, demand=demand)
        out += checks
        findings += found
    return out


def _ip_limits(system: System, findings: list[Finding]) -> list[LimitCheck]:
    out: list[LimitCheck] = []
    for region in system.regions:
        net = layout(system, region.name)
        tier = "public" if system.network.layout == "public-only" else "private"
        ips = sum(s.usable for s in net.tier(tier))
        pods = sum(p.max * instance_type(p.instance_types[0]).max_pods + p.max for p in system.cluster.node_pools)
        out.append(LimitCheck(region.name, f"pod IPs ({tier} subnets)", float(ips), "IPs", float(pods),
                              "every node at max, every pod slot used (VPC CNI gives pods VPC IPs)"))
        if pods > ips:
            findings.append(Finding("high", "capacity",
                                    f"{region.name}: {pods} pod IPs needed at full scale but the {tier} subnets hold "
                                    f"{ips}", f"regions.{region.name}.vpc_cidr", "use a larger VPC CIDR"))
    return out


def _shortfalls(system: System, services: list[ServiceCapacity]) -> list[Finding]:
    """One finding per service whose replicas.max is short in any region."""
    out: list[Finding] = []
    for name, svc in system.services.items():
        short = [sc for sc in services if sc.service == name and sc.short_by]
        if not short:
            continue
        worst = max(short, key=lambda sc: sc.replicas_needed)
        tp = worst.throughput
        where = ", ".join(f"{sc.replicas_needed} in {sc.region} ({sc.demand_rps:,.0f} {tp.unit})" for sc in short)
        est = "; throughput is an ESTIMATE, measure it with the benchmark" if tp.source == "estimate" else ""
        out.append(Finding(
            "high", "capacity",
            f"{name} needs replicas at the peak: {where}, but replicas.max is {svc.replicas.max} "
            f"({tp.rps_per_replica:,.0f} {tp.unit}/replica at a {worst.target_utilisation:.0%} target{est})",
            f"services.{name}.replicas.max",
            f"raise replicas.max to {worst.replicas_needed}, make one replica faster, or set slo.peak_mix"))
    return out
