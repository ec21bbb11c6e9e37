"""The plan's text says what its numbers are: every per-replica figure can be recomputed from the basis printed
next to it, each measured figure carries its own date, prices name the regions priced, and failure text names
only what the system has. Checked on every system under ``systems/`` with the repository's benchmark file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stackwright.plan import build_plan, to_markdown
from stackwright.plan.model import Plan
from stackwright.spec import load_system
from tests.plan.specs import ROOT

SYSTEMS = sorted(p.parent.name for p in (ROOT / "systems").glob("*/system.yaml"))
BENCH = ROOT / "bench" / "per_replica.json"

# {u}: the unit, rps for a service and msg/s for a worker (the same in every place of one sentence).
_U = r"(?:rps|msg/s)"
MEASURED = re.compile(rf"held ([\d,.]+) ({_U}) on a whole core at ([\d.]+)m CPU per 1,000 \2; the spec's (\d+)m CPU "
                      rf"request / ([\d.]+)m x 1,000 = ([\d,]+) \2(, capped at the ([\d,]+) \2)?")
RECORDED = re.compile(rf"^([\d,]+) ({_U}) per replica as recorded")
ESTIMATE = re.compile(rf"the low end x the spec's (\d+)m CPU request: ([\d,]+) x ([\d.]+) = ([\d,]+) ({_U})")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _plan(name: str, bench: Path | None = BENCH) -> Plan:
    return build_plan(load_system(ROOT / "systems" / name), bench_file=bench)


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_per_replica_figure_is_recomputed_from_its_stated_basis(name: str) -> None:
    system = load_system(ROOT / "systems" / name)
    plan = _plan(name)
    rows = json.loads(BENCH.read_text())["services"]
    doc = to_markdown(plan)
    assert "rescaled by CPU to the spec's" not in doc  # the old wording, read as "rate x request"
    for sc in plan.capacity.services:
        tp, request_m = sc.throughput, system.services[sc.service].resources.cpu_m
        metric = system.services[sc.service].autoscale.metric if system.services[sc.service].autoscale else None
        if metric is not None and metric.peak is not None:
            # Scaled on a metric of its own: its figure is the autoscaler's target, in that metric's unit.
            assert (tp.rps_per_replica, tp.unit, tp.source) == (metric.target, metric.name, "estimate")
            assert f"{metric.target:g} {metric.name} per replica (autoscale.metric.target)" in tp.basis
            assert f"| {sc.service} | {tp.rps_per_replica:,.0f} {metric.name} | ESTIMATE |" in doc
            continue
        if tp.source == "estimate":
            m = ESTIMATE.search(tp.basis)
            assert m, tp.basis
            assert int(m.group(1)) == request_m and float(m.group(3)) == request_m / 1000
            assert _num(m.group(2)) * float(m.group(3)) == pytest.approx(tp.rps_per_replica)
            assert round(tp.rps_per_replica) == _num(m.group(4)) and m.group(5) == tp.unit
            continue
        row = rows[f"{name}/{sc.service}"]
        # Item 2: the row's own date, not the file's.
        assert f"measured {row['measured_at']} on {row['machine']}" in tp.basis
        m = MEASURED.search(tp.basis)
        if m is None:
            recorded = RECORDED.search(tp.basis)
            assert recorded, tp.basis
            assert tp.rps_per_replica == row["rps_per_replica"] and recorded.group(2) == tp.unit
            continue
        whole, per_1k, shown_request, by_cpu = _num(m.group(1)), float(m.group(3)), int(m.group(4)), _num(m.group(6))
        assert shown_request == request_m and float(m.group(5)) == per_1k and m.group(2) == tp.unit
        assert round(request_m / per_1k * 1000) == by_cpu  # the sum printed is the sum done
        expected = min(whole, request_m / per_1k * 1000)
        assert tp.rps_per_replica == pytest.approx(expected, rel=1e-3)
        assert (m.group(7) is not None) == (whole < request_m / per_1k * 1000)
        # The document's figure is the one the basis gives, in the unit the service's rate counts.
        assert f"| {sc.service} | {tp.rps_per_replica:,.0f} {tp.unit} | measured |" in doc
        assert tp.unit == ("msg/s" if system.services[sc.service].kind == "worker" else "rps")


def test_the_repository_file_gives_the_figures_the_arithmetic_says() -> None:
    """The figures the newcomer checked by hand: voting's auth is 250m / 352m per 1k rps = 710 rps (not
    3,500 x 0.25), and the worker's 500m would buy 17,182 msg/s by CPU but one core held 15,237 (it drains
    messages: its rate was labelled rps)."""
    plan = _plan("voting")
    tps = {sc.service: sc.throughput for sc in plan.capacity.services if sc.region == "us-east-1"}
    assert "the spec's 250m CPU request / 352m x 1,000 = 710 rps" in tps["auth"].basis
    assert ("the spec's 500m CPU request / 29.1m x 1,000 = 17,182 msg/s, capped at the 15,237 msg/s the whole core "
            "held" in tps["worker"].basis)
    assert round(tps["worker"].rps_per_replica) == 15_237


def test_a_row_is_rescaled_to_the_spec_of_the_day_and_dated_by_itself(tmp_path: Path) -> None:
    """A row measured on another day than the file's latest run shows its own date; the rate follows the
    spec's CPU request (vote asks 500m): 500 / 250 x 1,000 = 2,000, under the 4,000 the core held."""
    path = tmp_path / "per_replica.json"
    path.write_text(json.dumps({"schema": 1, "measured_at": "2026-02-02", "machine": "newest box", "services": {
        "voting/vote": {"rps_per_replica": 999.0, "whole_core_rps": 4000.0, "cpu_millicores_per_1k_rps": 250.0,
                        "measured_at": "2026-01-01", "machine": "old box", "note": "POST /votes"},
        "voting/results": {"rps_per_replica": 1234.0}}}))
    plan = _plan("voting", path)
    tps = {sc.service: sc.throughput for sc in plan.capacity.services if sc.region == "us-east-1"}
    assert tps["vote"].rps_per_replica == 2000.0
    assert "measured 2026-01-01 on old box" in tps["vote"].basis and "2026-02-02" not in tps["vote"].basis
    assert tps["results"].rps_per_replica == 1234.0 and "1,234 rps per replica as recorded" in tps["results"].basis
    assert "measured 2026-02-02 on newest box" in tps["results"].basis  # a row without a date: the file's
    note = next(n for n in plan.notes if n.startswith("benchmark results"))
    assert "vote measured 2026-01-01 on old box" in note and "results measured 2026-02-02 on newest box" in note


def test_a_system_with_no_rows_says_none_of_its_figures_was_measured() -> None:
    plan = _plan("fastapi-app")
    assert all(sc.throughput.source == "estimate" for sc in plan.capacity.services)
    note = next(n for n in plan.notes if n.startswith("benchmark results"))
    assert "none of its per-replica figures was measured" in note
    assert "measured 20" not in note


@pytest.mark.parametrize("name", SYSTEMS)
def test_prices_name_the_regions_the_spec_runs_in(name: str) -> None:
    """fastapi-app runs in ap-southeast-1 and is priced there; the text said "Linux, us-east-1"."""
    plan = _plan(name)
    basis = plan.cost.basis
    for region in plan.regions:
        assert region in basis
    if "us-east-1" not in plan.regions:
        assert f"us-east-1 prices x the table's {plan.regions[0]} multiplier per category" in basis
    assert f"Prices: `stackwright/plan/prices/aws.yaml`, {basis}, as of" in to_markdown(plan)


def test_fastapi_app_prices_say_ap_southeast_1() -> None:
    basis = _plan("fastapi-app").cost.basis
    assert basis.startswith("on-demand list prices, Linux, for the spec's region ap-southeast-1 (")


@pytest.mark.parametrize("name", SYSTEMS)
def test_an_az_failure_names_only_what_the_system_has(name: str) -> None:
    system = load_system(ROOT / "systems" / name)
    row = next(s for s in _plan(name).failure.scenarios if s.event == "an AZ fails")
    text = f"{row.impact} | {row.data_loss}"
    kinds = {r.kind for r in system.resources.values()}
    engines = {getattr(r, "engine", None) for r in system.resources.values()}
    assert ("Redis" in text) == ("redis" in kinds)
    assert ("Aurora" in text) == ("aurora-postgresql" in engines)
    assert ("RDS" in text) == ("rds-postgresql" in engines)
    assert ("SQS" in text) == ("queue" in kinds)
    for res_name, res in system.resources.items():
        if res.kind in {"postgres", "redis", "queue"}:
            assert res_name in text  # every store that an AZ loss touches is named


def test_fastapi_app_az_failure_mentions_its_external_database_only() -> None:
    row = next(s for s in _plan("fastapi-app").failure.scenarios if s.event == "an AZ fails")
    assert row.impact == "1/2 of nodes and pods; no NAT (public subnets)"
    assert row.data_loss == "external database db: not analysed here"


AZ_LEFT = re.compile(r"^(\d+) of (\d+) AZs left: the remaining replicas run at (\d+)% of their capacity "
                     r"\(at (\d+)% before\) until the lost pods are replaced$")


@pytest.mark.parametrize("name", SYSTEMS)
def test_capacity_after_an_az_loss_is_said_plainly_and_adds_up(name: str) -> None:
    plan = _plan(name)
    primary = plan.regions[0]
    peak = {s.service: s for s in plan.capacity.services if s.region == primary}
    for row in plan.failure.spread:
        m = AZ_LEFT.match(row.capacity_after_az_loss)
        if m is None:
            assert row.capacity_after_az_loss == "n/a" or row.capacity_after_az_loss.startswith("already over"), \
                row.capacity_after_az_loss
            continue
        left, azs, after, before = (int(g) for g in m.groups())
        assert (left, azs) == (row.azs - 1, row.azs)
        sc = peak[row.service]
        load = sc.demand_rps / (sc.replicas_at_peak * sc.throughput.rps_per_replica)
        assert before == round(load * 100) and after == round(load * azs / left * 100)


def test_fastapi_app_after_an_az_loss() -> None:
    row = _plan("fastapi-app").failure.spread[0]
    assert row.capacity_after_az_loss == ("1 of 2 AZs left: the remaining replicas run at 67% of their capacity "
                                          "(at 33% before) until the lost pods are replaced")


@pytest.mark.parametrize("name", SYSTEMS)
def test_capacity_notes_name_only_the_stores_the_system_has(name: str) -> None:
    """fastapi-app (an external database, no Redis) was told its "connections and Redis memory are checked"
    and that nothing measures "Aurora/RDS"."""
    system = load_system(ROOT / "systems" / name)
    notes = " ".join(_plan(name).capacity.notes)
    kinds = {r.kind for r in system.resources.values()}
    managed = any(r.kind == "postgres" and r.engine != "external" for r in system.resources.values())
    assert ("Redis" in notes) == ("redis" in kinds)
    assert ("Aurora/RDS" in notes) == managed
    assert ("PostgreSQL connections" in notes) == managed


def test_a_service_scaled_on_streams_is_planned_in_streams_through_an_az_loss() -> None:
    """speech's stt-api carries streams (autoscale on stt_streams_active, target 8, peak 40): its demand,
    per-replica figure and AZ-loss load are in streams. It was given a web handler's 10,500 rps per replica,
    so losing an AZ at the peak read "0% of their capacity"."""
    plan = _plan("speech")
    (stt,) = [sc for sc in plan.capacity.services if sc.service == "stt-api"]
    assert (stt.demand_rps, stt.throughput.rps_per_replica, stt.replicas_at_peak) == (40, 8, 5)
    doc = to_markdown(plan)
    assert "| stt-api | 40 stt_streams_active |" in doc.replace(",", "")
    (row,) = [r for r in plan.failure.spread if r.service == "stt-api"]
    assert "run at 150% of their capacity (at 100% before)" in row.capacity_after_az_loss, row.capacity_after_az_loss
    assert any("stt-api at 150% of capacity" in f.message for f in plan.findings)
