"""Failure analysis: single points of failure, AZ spread and disruption budgets, RTO/RPO per data store.

Recovery figures used (typical / worst, seconds), from AWS documentation as of 2025-01:

* Aurora in-region failover to a reader: 30 / 60 (shared storage: no data loss).
* Aurora without a reader: a new writer is created, "typically under 10 minutes": 600 / 900.
* RDS Multi-AZ failover to the synchronous standby: 60 / 120 (no data loss).
* RDS single-AZ: point-in-time restore, 1800 / 3600; up to 300 s of writes lost (log upload interval).
* Aurora Global Database / cross-region replica promotion: 60 / 300, data loss ~1 s (replication lag).
* ElastiCache Multi-AZ failover to a replica: 30 / 120; asynchronous replication loses the last writes.
* SQS: messages are stored in several AZs before the send is acknowledged.

Route 53 detects a failed region in health_check_interval_s x failure_threshold seconds, and clients move
once their cached record expires (dns_ttl_s).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..spec import System
from .capacity import region_shares
from .k8s import Disruption, Workloads
from .model import CapacityReport, FailureReport, FailureScenario, Finding, SpreadRow, StoreRecovery

AURORA_FAILOVER = (30.0, 60.0)
AURORA_RECREATE = (600.0, 900.0)
RDS_MULTI_AZ = (60.0, 120.0)
RDS_RESTORE = (1800.0, 3600.0)
RDS_PITR_LOSS_S = 300.0
CROSS_REGION_PROMOTION = (60.0, 300.0)
CROSS_REGION_LAG_S = 1.0
REDIS_FAILOVER = (30.0, 120.0)
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
        if res.kind == "postgres" and res.engine != "external":
            if res.instances == 1 and (res.engine == "aurora-postgresql" or not res.multi_az):
                spof("high", f"database {name} has one instance: no failover target",
                     f"resources.{name}.instances", "use 2 instances (writer + reader in another AZ)")
            elif res.engine == "aurora-postgresql" and not res.multi_az:
                spof("medium", f"database {name} keeps its instances in one AZ", f"resources.{name}.multi_az",
                     "set multi_az: true")
        if res.kind == "redis" and res.replicas_per_shard == 0:
            spof("medium", f"Redis {name} has no replicas: a node loss empties it until replaced",
                 f"resources.{name}.replicas_per_shard", "set replicas_per_shard: 1 or more")
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
            after = f"{after_loss:.0%} of capacity until replaced (from {load:.0%})"
            if load > 1.0:
                after = f"already over capacity at the peak ({load:.0%}); {after_loss:.0%} after an AZ loss"
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
    stores = [_store(system, name, res, detect) for name, res in sorted(system.resources.items())
              if res.kind in ("postgres", "redis", "queue", "bucket")]
    slo_text = f"slo.rto_minutes ({system.slo.rto_minutes:g} min)"
    for st in stores:
        if st.kind == "postgres" and st.rto_s_typical is not None and st.rto_s_worst is not None:
            checks = [("in-region failover", (st.rto_s_typical, st.rto_s_worst), st.rpo_s)]
            if st.region_rto_s is not None:
                checks.append(("region loss", st.region_rto_s, st.region_rpo_s))
            for what, (typical, worst), rpo in checks:
                if typical > rto_s:
                    findings.append(Finding("high", "failure", f"database {st.store}: {what} takes ~{typical:.0f} s, "
                                            f"over {slo_text}", f"resources.{st.store}",
                                            "add a reader in another AZ / a cross-region replica"))
                elif worst > rto_s:
                    findings.append(Finding("medium", "failure", f"database {st.store}: {what} can take up to "
                                            f"{worst:.0f} s (typical {typical:.0f} s), over {slo_text}",
                                            f"resources.{st.store}", "automate the promotion and rehearse it"))
                if rpo is not None and rpo > rpo_s:
                    findings.append(Finding("high", "failure", f"database {st.store}: {what} can lose {rpo:g} s of "
                                            f"writes, over slo.rpo_seconds ({rpo_s:g} s)", f"resources.{st.store}",
                                            "use shared-storage or synchronous replication"))
            if multi_region and st.region_rto_s is None:
                findings.append(Finding("high", "failure", f"database {st.store} has no copy outside {primary}: "
                                        "losing that region stops writes for hours",
                                        f"resources.{st.store}.cross_region_replicas", "set cross_region_replicas"))
        if st.kind == "postgres" and st.engine == "external":
            findings.append(Finding("low", "failure", f"database {st.store} is external: its RTO/RPO are not "
                                    "analysed here", f"resources.{st.store}.engine",
                                    "document its recovery (backups, failover) next to the spec"))

    # ---- scenarios
    scenarios = _scenarios(system, capacity, detect, formula, findings)
    report = FailureReport(detection_s=detect if multi_region else 0.0,
                           detection_formula=formula if multi_region else "single region: no DNS failover",
                           spofs=spofs, spread=spread, stores=stores, scenarios=scenarios,
                           slo_rto_s=rto_s, slo_rpo_s=rpo_s)
    return report, findings


def _store(system: System, name: str, res, detect: float) -> StoreRecovery:
    multi = len(system.regions) > 1
    if res.kind == "postgres":
        if res.engine == "external":
            return StoreRecovery(name, "postgres", "external", "outside this spec", "not analysed", None, None, None,
                                 "not analysed", "not analysed")
        aurora = res.engine == "aurora-postgresql"
        if aurora:
            repl = "Aurora shared storage (6 copies over 3 AZs)" + (
                f" + {res.instances - 1} reader(s)" if res.instances > 1 else "")
            rto = AURORA_FAILOVER if res.instances > 1 else AURORA_RECREATE
            failover = ("promote a reader" if res.instances > 1 else "create a new writer")
            rpo, rpo_text = 0.0, "0 (storage is shared)"
        elif res.multi_az:
            repl, rto, failover = "synchronous Multi-AZ standby", RDS_MULTI_AZ, "fail over to the standby"
            rpo, rpo_text = 0.0, "0 (synchronous standby)"
        else:
            repl, rto, failover = "none (single instance)", RDS_RESTORE, "point-in-time restore"
            rpo, rpo_text = RDS_PITR_LOSS_S, f"up to {RDS_PITR_LOSS_S:g} s (transaction log upload interval)"
        if multi and res.cross_region_replicas:
            kind = "Aurora Global Database" if aurora else "cross-region read replica"
            promo = CROSS_REGION_PROMOTION
            region_loss = (f"{kind}: promote a secondary after detection ({detect:.0f} s) + promotion "
                           f"({promo[0]:.0f}-{promo[1]:.0f} s) = {detect + promo[0]:.0f}-{detect + promo[1]:.0f} s; "
                           f"~{CROSS_REGION_LAG_S:g} s of writes lost (replication lag)")
            return StoreRecovery(name, "postgres", res.engine, repl + f"; async {kind} to the secondaries",
                                 failover, rto[0], rto[1], rpo, rpo_text, region_loss,
                                 (detect + promo[0], detect + promo[1]), CROSS_REGION_LAG_S)
        if multi:
            region_loss = ("no copy outside the primary region: writes stop until it returns or a snapshot is "
                           "restored elsewhere (hours)")
        else:
            region_loss = "single region: restore from backup elsewhere (hours)"
        return StoreRecovery(name, "postgres", res.engine, repl, failover, rto[0], rto[1], rpo, rpo_text, region_loss)
    if res.kind == "redis":
        if res.replicas_per_shard:
            return StoreRecovery(name, "redis", "elasticache", f"{res.replicas_per_shard} async replica(s) per shard",
                                 "promote a replica (Multi-AZ)", REDIS_FAILOVER[0], REDIS_FAILOVER[1], None,
                                 "the last writes not yet replicated (async)",
                                 "per-region copy, not replicated across regions: rebuilt by the surviving region"
                                 if res.per_region else "lost with the region")
        return StoreRecovery(name, "redis", "elasticache", "none", "replace the node; data is gone", 300.0, 900.0,
                             None, "everything (no replica)", "lost with the region")
    if res.kind == "queue":
        return StoreRecovery(name, "queue", "sqs-fifo" if res.fifo else "sqs", "SQS stores each message in several AZs",
                             "none needed within a region", 0.0, 0.0, 0.0, "0 (stored before the send returns)",
                             "messages in the failed region's queue wait until it returns (within retention "
                             f"{res.retention}); lost if it never does")
    return StoreRecovery(name, "bucket", "s3", "S3 stores objects in 3+ AZs", "none needed within a region", 0.0, 0.0,
                         0.0, "0", "unavailable until the region returns (no cross-region replication in the spec)")


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
    out.append(FailureScenario(
        "an AZ fails",
        f"1/{net.azs} of nodes and pods; the Aurora/RDS writer or Redis primary there fails over; {nat}",
        "load balancer health checks (~10-30 s); Kubernetes node NotReady ~40 s",
        "surviving replicas absorb the load while the HPA and cluster autoscaler replace capacity in other AZs",
        "none for Aurora/Multi-AZ RDS/SQS; Redis may lose its last unreplicated writes")
        if net.azs > 1 else FailureScenario("an AZ fails", "everything (one AZ)", "-", "rebuild", "per data store"))
    shares = region_shares(system)
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
                "DNS failover to the healthy regions" + (
                    "; promote a secondary database (Aurora Global Database managed failover)"
                    if region.name == primary and any(r.kind == "postgres" and r.cross_region_replicas
                                                       for r in system.resources.values()) else ""),
                "per data store (see the table)"))
    else:
        out.append(FailureScenario(f"region {primary} fails", "full outage", "-",
                                   "re-create the stack in another region from the spec and backups",
                                   "whatever is not backed up outside the region"))
    for name, res in sorted(system.resources.items()):
        if res.kind == "postgres" and res.engine != "external":
            st = _store(system, name, res, detect)
            out.append(FailureScenario(f"the {name} primary fails", "writes fail; reads from readers continue",
                                       "RDS event + connection errors (seconds)",
                                       f"{st.failover}: {st.rto_s_typical:.0f}-{st.rto_s_worst:.0f} s"
                                       if res.instances > 1 or res.multi_az else st.failover, st.rpo_text))
        elif res.kind == "redis":
            st = _store(system, name, res, detect)
            out.append(FailureScenario(f"Redis {name} fails", "cache misses and errors on its users "
                                       f"({', '.join(s for s, v in system.services.items() if name in v.uses)})",
                                       "ElastiCache health checks (seconds)", st.failover, st.rpo_text))
        elif res.kind == "queue":
            out.append(FailureScenario(f"queue {name} is unavailable",
                                       "producers cannot enqueue (they should answer 503 and clients retry); "
                                       "consumers idle", "SQS API errors",
                                       "SQS is regional and multi-AZ; it recovers on its own",
                                       "none for acknowledged messages; failed messages go to the DLQ after "
                                       f"{res.max_receive_count} receives" if res.dlq else
                                       "none for acknowledged messages; poison messages retry forever (no DLQ)"))
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
