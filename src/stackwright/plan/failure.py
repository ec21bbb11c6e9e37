"""Failure analysis: single points of failure, AZ spread and disruption budgets, RTO/RPO per data store.

Each resource kind says how it fails and recovers (:class:`~stackwright.resources.base.ResourceKind`'s
``spofs``, ``recovery``, ``recovery_findings``, ``failure_scenarios`` and ``region_loss_step``); its
recovery figures, from AWS documentation, live in its module (``resources/postgres.py``, ``redis.py``).

Route 53 detects a failed region in health_check_interval_s x failure_threshold seconds, and clients move
once their cached record expires (dns_ttl_s).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..resources import kind_of
from ..spec import System
from .capacity import region_shares
from .k8s import Disruption, Workloads
from .model import CapacityReport, FailureReport, FailureScenario, Finding, SpreadRow, StoreRecovery

NODE_NOT_READY_S = 40
UNREACHABLE_TOLERATION_S = 300


def detection_seconds(system: System) -> tuple[float, str]:
    """How long until clients leave a failed region: Route 53 detection plus the record's TTL."""
    e = system.edge
    total = e.health_check_interval_s * e.health_check_failure_threshold + e.dns_ttl_s
    formula = (f"{e.health_check_interval_s} s interval x {e.health_check_failure_threshold} failures + "
               f"{e.dns_ttl_s} s DNS TTL = {total} s")
    return float(total), formula


def _drain_ok(pdb: Disruption | None, replicas_min: int) -> tuple[str, bool]:
    if pdb is None:
        return "none", True
    if pdb.max_unavailable is not None:
        value = pdb.max_unavailable
        if isinstance(value, str) and value.endswith("%"):
            allowed = math.floor(replicas_min * int(value[:-1]) / 100)
        else:
            allowed = int(value)
        return f"maxUnavailable {value}", allowed >= 1
    value = pdb.min_available
    if isinstance(value, str) and value.endswith("%"):
        need = math.ceil(replicas_min * int(value[:-1]) / 100)
    else:
        need = int(value or 0)
    return f"minAvailable {value}", replicas_min - need >= 1


def build_failure(system: System, capacity: CapacityReport, work: Workloads) -> tuple[FailureReport, list[Finding]]:
    """Single points of failure, spread, per-store recovery and failure scenarios, with findings."""
    findings: list[Finding] = []
    spofs: list[str] = []
    net = system.network
    detect, formula = detection_seconds(system)
    multi_region = len(system.regions) > 1
    rto_s, rpo_s = system.slo.rto_minutes * 60, system.slo.rpo_seconds
    primary = system.primary_region.name

    def spof(severity: str, text: str, where: str, hint: str) -> None:
        spofs.append(text)
        findings.append(Finding(severity, "failure", text, where, hint))  # type: ignore[arg-type]

    # ---- single points of failure
    for name, svc in system.services.items():
        if svc.replicas.min < 2:
            sev = "high" if svc.routes else "medium"
            spof(sev, f"service {name} runs a single replica at minimum: a pod or node loss stops it",
                 f"services.{name}.replicas.min", "set replicas.min to 2 or more")
    if net.azs == 1:
        spof("high", "the network has one AZ: an AZ outage is a full outage", "network.azs", "use 2-3 AZs")
    if net.layout == "private" and net.nat == "single" and net.azs > 1:
        spof("medium", "one NAT gateway serves every AZ: losing its AZ cuts outbound traffic (image pulls, "
             "the identity provider's JWKS, AWS APIs without endpoints) everywhere", "network.nat", "use nat: per-az")
    for pool in system.cluster.node_pools:
        if pool.min < min(2, net.azs):
            spof("medium", f"node group {pool.name} may shrink to {pool.min} node: every pod on one machine",
                 f"cluster.node_pools.{pool.name}.min", f"set min to {min(net.azs, 3)} (one node per AZ)")
    for name, res in sorted(system.resources.items()):
        for severity, text, where, hint in kind_of(res).spofs(name, res):
            spof(severity, text, where, hint)
    if not multi_region:
        spofs.append(f"a single region ({primary}): a regional outage is a full outage")

    # ---- AZ spread and PDBs
    spread: list[SpreadRow] = []
    peak_rows = {(s.region, s.service): s for s in capacity.services}
    for name, svc in system.services.items():
        pdb = work.pdbs.get(name)
        pdb_text, drain_ok = _drain_ok(pdb, svc.replicas.min)
        spread_zone = work.spread_across_zones.get(name, False)
        covered = min(svc.replicas.min, net.azs) if spread_zone else 1
        row = peak_rows.get((primary, name))
        after = "n/a"
        if row is not None and row.demand_rps and net.azs > 1:
            load = row.demand_rps / (row.replicas_at_peak * row.throughput.rps_per_replica)
            after_loss = load * net.azs / (net.azs - 1)
            # The share of the surviving replicas' capacity the peak needs: the load before, times azs/(azs - 1).
            left = f"{net.azs - 1} of {net.azs} AZs left"
            after = (f"{left}: the remaining replicas run at {after_loss:.0%} of their capacity (at {load:.0%} "
                     "before) until the lost pods are replaced")
            if load > 1.0:
                after = (f"already over capacity at the peak (the peak needs {load:.0%} of it); {left}: "
                         f"{after_loss:.0%}")
            elif after_loss > 1.0:
                sev = "low" if after_loss <= 1.2 else "medium"
                findings.append(Finding(
                    sev, "failure", f"losing an AZ at the peak runs {name} at {after_loss:.0%} of capacity "
                    "until the autoscaler replaces the lost pods", f"services.{name}.autoscale",
                    "lower the HPA target or raise replicas.max"))
        if pdb is not None and not drain_ok:
            findings.append(Finding("medium", "failure", f"PDB of {name} ({pdb_text}) allows no disruption at "
                                    f"{svc.replicas.min} replicas: node drains and upgrades block",
                                    f"services.{name}.replicas.min", "use maxUnavailable: 1"))
        if pdb is None and svc.replicas.min >= 2:
            findings.append(Finding("low", "failure", f"{name} has no PodDisruptionBudget: a drain may evict every "
                                    "replica at once", f"services.{name}", "render a PDB with maxUnavailable: 1"))
        spread.append(SpreadRow(name, svc.replicas.min, net.azs, covered, pdb_text, drain_ok, after))

    # ---- data stores
    stores: list[StoreRecovery] = []
    for name, res in sorted(system.resources.items()):
        store = kind_of(res).recovery(system, name, res, detect_s=detect)
        if store is not None:
            stores.append(store)
    for st in stores:
        res = system.resources[st.store]
        findings += kind_of(res).recovery_findings(system, st.store, res, st)

    # ---- scenarios
    scenarios = _scenarios(system, capacity, detect, formula, findings)
    report = FailureReport(detection_s=detect if multi_region else 0.0,
                           detection_formula=formula if multi_region else "single region: no DNS failover",
                           spofs=spofs, spread=spread, stores=stores, scenarios=scenarios,
                           slo_rto_s=rto_s, slo_rpo_s=rpo_s)
    return report, findings


def _scenarios(system: System, capacity: CapacityReport, detect: float, formula: str,
               findings: list[Finding]) -> list[FailureScenario]:
    net = system.network
    primary = system.primary_region.name
    pools = [p for p in capacity.pools if p.region == primary]
    nodes = sum(p.baseline_nodes for p in pools)
    out = [FailureScenario(
        "a node fails",
        f"pods on it (~1/{nodes} of the baseline) stop; Services drop them when the node turns NotReady",
        f"~{NODE_NOT_READY_S} s (node-monitor grace period)",
        f"pods are recreated elsewhere after the {UNREACHABLE_TOLERATION_S} s default unreachable toleration; "
        "the cluster autoscaler adds a node if they do not fit (minutes)",
        "none (stateless pods; state lives in the data stores)")]
    nat = {"per-az": "only that AZ's NAT is lost", "single": "if it held the NAT, outbound traffic stops everywhere",
           "none": "no NAT (public subnets)"}[net.nat]
    # Only the stores this system has: each kind says what an AZ loss does to it.
    losses = [kind_of(res).az_loss(name, res) for name, res in sorted(system.resources.items())]
    impacts = [i for i, _ in losses if i]
    lost = [d for _, d in losses if d]
    out.append(FailureScenario(
        "an AZ fails",
        "; ".join([f"1/{net.azs} of nodes and pods", *impacts, nat]),
        "load balancer health checks (~10-30 s); Kubernetes node NotReady ~40 s",
        "surviving replicas absorb the load while the HPA and cluster autoscaler replace capacity in other AZs",
        "; ".join(lost) or "none (stateless pods)")
        if net.azs > 1 else FailureScenario("an AZ fails", "everything (one AZ)", "-", "rebuild", "per data store"))
    shares = region_shares(system)
    # Steps of the primary's loss (promote a database replica), once each, in resource order.
    steps = list(dict.fromkeys(step for r in system.resources.values()
                               if (step := kind_of(r).region_loss_step(r)) is not None))
    if len(system.regions) > 1:
        for region in system.regions:
            rest = {r: s for r, s in shares.items() if r != region.name}
            total = sum(rest.values())
            if total <= 0:
                continue
            moved = {r: system.slo.peak_rps * s / total for r, s in rest.items()}
            gw = system.edge.api_gateway
            over = [r for r, rps in moved.items() if gw and rps > gw.rps_limit]
            if over:
                sent = ", ".join(f"{moved[r]:,.0f} rps to {r}" for r in over)
                limit = gw.rps_limit if gw else 0
                findings.append(Finding(
                    "high", "failure",
                    f"losing {region.name} at the peak sends {sent}, over the API Gateway limit ({limit:,} rps)",
                    "edge.api_gateway.rps_limit", "raise the regional throttle to the failover peak"))
            writes = ("writes stop until a secondary database is promoted"
                      if region.name == primary else f"writes keep going to {primary}")
            out.append(FailureScenario(
                f"region {region.name} fails",
                f"its {shares[region.name]:.0%} of traffic moves to "
                + ", ".join(f"{r} ({rps:,.0f} rps at peak)" for r, rps in moved.items()) + f"; {writes}",
                f"Route 53: {formula}",
                "DNS failover to the healthy regions" + "".join(f"; {step}" for step in steps
                                                                if region.name == primary),
                "per data store (see the table)"))
    else:
        out.append(FailureScenario(f"region {primary} fails", "full outage", "-",
                                   "re-create the stack in another region from the spec and backups",
                                   "whatever is not backed up outside the region"))
    for name, res in sorted(system.resources.items()):
        out += kind_of(res).failure_scenarios(system, name, res, detect_s=detect)
    return out


#: Where ``plan`` looks for a recorded region failover drill of a system, in the cwd or above the spec.
DRILL_RELATIVE = "bench/drills/{name}-region-failover.json"


def measured_failover(system: System) -> tuple[dict[str, object] | None, Path | None]:
    """The recorded result of ``stackwright drill region-failover`` for ``system`` (a JSON object with
    ``rto_s``, ``lost_acked``, ``lost_span_s``, ``commit``, ...) and its file, or (None, None)."""
    import json

    rel = Path(DRILL_RELATIVE.format(name=system.name))
    candidates = [Path.cwd() / rel]
    if system.source is not None:
        candidates += [parent / rel for parent in system.source.resolve().parents]
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except (OSError, ValueError):
                return None, None
            return (data, candidate) if isinstance(data, dict) else (None, None)
    return None, None
