"""Compute a :class:`Plan` from a spec: the one place that runs every section in order."""

from __future__ import annotations

from pathlib import Path

from ..deploy import resolve
from ..deploy.environments import default_environment
from ..resources import kind_of
from ..spec import System
from .alerts import alert_coverage
from .capacity import build_capacity
from .cost import build_cost
from .diagrams import all_diagrams
from .errors import PlanError, PriceError
from .failure import build_failure, measured_failover
from .findings import collect
from .k8s import workloads
from .model import Plan, SubnetRow
from .prices import DEFAULT_TABLE, PriceTable, load_prices
from .reference import reconcile
from .throughput import bench_note, find_bench_file, load_bench


def _priced_first(system: System, prices: PriceTable) -> None:
    """Look up every instance type's price before any section uses its size, so a type missing from the
    tables is reported as the missing price (the loader reports it with file:line for specs from a file)."""
    for pool in system.cluster.node_pools:
        for itype in pool.instance_types:
            try:
                prices.price(f"ec2.{itype}")
            except PriceError as exc:
                raise PriceError(f"instance type '{itype}' of node pool {pool.name}: {exc}") from None
    for res in system.resources.values():
        for group, itype, _field, _what in kind_of(res).priced_instances(res):
            prices.price(f"{group}.{itype}")


def build_plan(system: System, environment: str | None = None, *, bench_file: Path | None = None,
               price_table: Path = DEFAULT_TABLE) -> Plan:
    """Everything ``stackwright plan`` reports for one environment of ``system``.

    Raises :class:`PlanError` (e.g. a price or instance type missing from the tables) before anything
    is written.
    """
    env = environment or default_environment(system)
    if env not in system.environments:
        raise PlanError(f"environment '{env}' is not in the spec's environments ({', '.join(system.environments)})")
    bench_path = find_bench_file(system, bench_file)
    bench = load_bench(bench_path) if bench_path else None
    prices = load_prices(price_table)
    _priced_first(system, prices)
    work = workloads(system, env)
    deployment = resolve(system, env)  # names, subnets and scale exactly as render builds them
    capacity, cap_findings = build_capacity(system, bench, env)
    cost, cost_findings = build_cost(system, capacity, prices, env, work.lb_kinds)
    failure, fail_findings = build_failure(system, capacity, work)
    failure.measured, drill_path = measured_failover(system)
    alerts_note, alert_findings = alert_coverage(system)
    notes = [f"alerts: {alerts_note}"]
    notes.append(bench_note(system, bench, bench_path))
    if drill_path is not None:
        notes.append(f"region failover measured: {drill_path.name} (stackwright drill region-failover)")
    return Plan(system=system.name, description=system.description, seed=system.seed, environment=env,
                regions=[r.name for r in system.regions], diagrams=all_diagrams(system, env),
                k8s_objects=work.objects, k8s_source=work.source, capacity=capacity, cost=cost, failure=failure,
                findings=collect(cap_findings, fail_findings, cost_findings, alert_findings),
                subnets=[SubnetRow(name, s.az, s.tier, s.cidr, s.usable)
                         for name, rd in deployment.regions.items() for s in rd.network.subnets],
                notes=notes, slos=slo_rows(system), reference=reconcile(system, cost))


def slo_rows(system: System) -> list[tuple[str, str]]:
    """The spec's objectives as (objective, target) rows for the plan's SLO table."""
    slo = system.slo
    rows = [("availability", f"{slo.availability:g}%")]
    if slo.latency_p95_ms is not None:
        rows.append(("latency p95", f"< {slo.latency_p95_ms} ms"))
    rows.append(("latency p99", f"< {slo.latency_p99_ms} ms"))
    if slo.error_rate_percent is not None:
        rows.append(("error rate (5xx)", f"< {slo.error_rate_percent:g}%"))
    rows += [("throughput (peak)", f"{slo.peak_rps:,.0f} req/s"),
             ("recovery time (RTO / MTTR)", f"< {slo.rto_minutes:g} min"),
             ("data loss (RPO)", f"< {slo.rpo_seconds:g} s")]
    return rows
