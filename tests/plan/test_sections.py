"""Capacity, failure analysis, Kubernetes objects and diagrams computed from small specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackwright.plan import PlanError, build_plan
from stackwright.plan.capacity import build_capacity, region_shares
from stackwright.plan.diagrams import all_diagrams
from stackwright.plan.failure import detection_seconds
from stackwright.plan.throughput import load_bench
from stackwright.spec import System, load_system
from tests.plan.specs import ROOT, SEED_003, make_system


def bench_file(tmp_path: Path, services: dict) -> Path:
    path = tmp_path / "bench" / "per_replica.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "measured_at": "2025-06-01", "machine": "test box 2 vCPU",
                                "services": services}))
    return path


def test_measured_throughput_replaces_the_estimate(tmp_path: Path, voting: System) -> None:
    bench = load_bench(bench_file(tmp_path, {"voting/vote": {"rps_per_replica": 2000, "p99_ms": 20, "note": "n"}}))
    report, _ = build_capacity(voting, bench)
    vote = next(s for s in report.services if s.region == "us-east-1" and s.service == "vote")
    assert vote.throughput.source == "measured"
    assert "2025-06-01" in vote.throughput.basis and "test box" in vote.throughput.basis
    assert vote.replicas_needed == 59  # ceil(70% x 100,000 / (2,000 x 60%))
    auth = next(s for s in report.services if s.service == "auth")
    assert auth.throughput.source == "estimate"


def test_bench_file_in_the_working_folder_is_found(tmp_path: Path, voting: System) -> None:
    bench_file(tmp_path, {"voting/vote": {"rps_per_replica": 2000}})  # the tests run from tmp_path
    plan = build_plan(voting)
    assert any("measured 2025-06-01" in s.throughput.basis for s in plan.capacity.services)


def test_malformed_bench_file_is_an_error(tmp_path: Path) -> None:
    path = bench_file(tmp_path, {"voting/vote": {"rps_per_replica": -3}})
    with pytest.raises(PlanError, match="rps_per_replica must be a positive number"):
        load_bench(path)


def test_peak_mix_and_queue_workers(voting: System) -> None:
    mixed = voting.model_copy(deep=True)
    mixed.slo.peak_mix = {"vote": 0.8, "results": 0.15, "auth": 0.05}
    report, _ = build_capacity(mixed, None)
    rows = {s.service: s for s in report.services if s.region == "us-east-1"}
    assert rows["vote"].demand_rps == pytest.approx(80_000)
    assert rows["worker"].demand_rps == pytest.approx(80_000)  # one message per vote request
    assert "queue votes" in rows["worker"].demand_basis
    assert rows["web"].demand_rps == pytest.approx(1_000)  # behind the CDN: 1% reaches the origin


def test_regions_without_share_split_evenly() -> None:
    data = {**SEED_003, "regions": [{"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16"},
                                    {"name": "us-west-2", "role": "secondary", "vpc_cidr": "10.1.0.0/16"}]}
    assert region_shares(make_system(data)) == {"us-east-1": 0.5, "us-west-2": 0.5}


def test_node_groups_from_requests(voting: System) -> None:
    report, _ = build_capacity(voting, None)
    pool = next(p for p in report.pools if p.region == "us-east-1")
    assert pool.instance_type == "m6i.2xlarge"
    assert pool.usable_cpu_m == 8000 - 90 - 250  # 8 vCPU - kube-reserved - DaemonSets
    assert pool.nodes_at_peak <= pool.nodes_max < pool.nodes_for_uncapped_peak
    assert pool.baseline_nodes == 3


def test_single_points_of_failure() -> None:
    data = {**SEED_003, "network": {"azs": 3, "layout": "private", "nat": "single"},
            "resources": {"db": {"kind": "postgres", "engine": "rds-postgresql", "instance_class": "db.t4g.medium",
                                 "instances": 1, "multi_az": False},
                          "cache": {"kind": "redis", "node_type": "cache.t4g.small", "replicas_per_shard": 0}},
            "services": {"api": {"replicas": {"min": 1, "max": 3}, "routes": [{"path": "/"}], "uses": ["db", "cache"]}},
            "slo": {"peak_rps": 100, "rto_minutes": 15, "rpo_seconds": 60}}
    plan = build_plan(make_system(data))
    messages = {(f.severity, f.message) for f in plan.findings}
    assert ("high", "service api runs a single replica at minimum: a pod or node loss stops it") in messages
    assert any(sev == "medium" and "one NAT gateway" in m for sev, m in messages)
    assert any(sev == "high" and "database db has one instance" in m for sev, m in messages)
    assert any(sev == "medium" and "Redis cache has no replicas" in m for sev, m in messages)
    # single-AZ RDS restores from backup: RTO over 15 min and RPO 300 s over 60 s
    assert any(sev == "high" and "in-region failover takes ~1800 s" in m for sev, m in messages)
    assert any(sev == "high" and "can lose 300 s of writes" in m for sev, m in messages)


def test_detection_time_and_region_failover(voting: System) -> None:
    assert detection_seconds(voting)[0] == 10 * 3 + 60
    plan = build_plan(voting)
    db = next(s for s in plan.failure.stores if s.store == "db")
    assert db.region_rto_s == (150.0, 390.0) and db.region_rpo_s == 1.0
    assert any(f.severity == "high" and f.message.startswith("losing us-east-1 at the peak") for f in plan.findings)
    # The ReplicationLagHigh alert (monitoring.rules) now backs the RPO: no "no alert watches replication lag".
    assert not any("replication lag" in f.message for f in plan.findings)


def test_kubernetes_objects(voting: System) -> None:
    plan = build_plan(voting)
    kinds = {(o.kind, o.name) for o in plan.k8s_objects}
    assert ("Rollout", "vote") in kinds and ("Deployment", "auth") in kinds
    assert ("ScaledObject", "worker") in kinds and ("Ingress", "voting") in kinds
    assert all(o.purpose for o in plan.k8s_objects)


def test_diagrams(voting: System) -> None:
    diagrams = {d.name: d for d in all_diagrams(voting, "prod")}
    deployment = diagrams["deployment"].source
    for cidr in ("10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"):
        assert f"VPC {cidr}" in deployment
    assert "async replication" in deployment and "|writes|" in deployment and "100k RPS limit" in deployment
    vote = diagrams["sequence-vote"].source
    assert "POST /polls/{id}/votes" in vote and "S_worker->>R_votes: receive messages" in vote
    for d in diagrams.values():
        if d.source.startswith("sequenceDiagram"):
            assert all(";" not in line.split(":", 1)[-1] for line in d.source.splitlines()[1:])
    network = diagrams["network"].source
    assert sum(f"NAT_us_east_1{az}[" in network for az in "abc") == 3 and "10.0.32.0/19" in network


def test_metric_scaled_service_is_sized_from_the_metric_peak() -> None:
    from tests.fixtures.load import fixture

    gpu = fixture("gpu").model_copy(deep=True)
    metric = gpu.services["transcriber"].autoscale.metric
    assert metric is not None
    metric.peak = 27  # streams at the peak, 8 per replica -> 4 replicas (ceil 3.4)
    report, findings = build_capacity(gpu, None)
    row = next(s for s in report.services if s.service == "transcriber")
    assert row.replicas_needed == 4
    assert "27 transcriber_streams_active at the peak / 8 per replica" in row.demand_basis
    pool = next(p for p in report.pools if p.pool == "gpu")
    assert pool.nodes_at_peak >= 4  # one T4 per g4dn.xlarge, one GPU per pod
    metric.peak = 40  # 5 replicas needed, replicas.max is 4: a shortfall
    _, findings = build_capacity(gpu, None)
    assert any("transcriber" in f.message for f in findings)


def _subgraphs(source: str) -> list[tuple[int, str]]:
    """(depth, title) of every Mermaid subgraph, in order."""
    depth, found = 0, []
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("subgraph "):
            found.append((depth, text.split("[", 1)[-1].strip('"]')))
            depth += 1
        elif text == "end":
            depth -= 1
    assert depth == 0, "unbalanced subgraph/end"
    return found


@pytest.mark.parametrize(("system", "groups"), [
    ("fastapi-app", ["Public subnets"]),
    ("voting", ["Public subnets", "Private subnets", "Isolated subnets"]),
])
def test_each_subnet_tier_is_drawn_once_per_region_with_the_cluster_in_its_own(system: str,
                                                                               groups: list[str]) -> None:
    spec = load_system(ROOT / "systems" / system)
    found = _subgraphs(next(d.source for d in all_diagrams(spec, "prod") if d.name == "deployment"))
    tiers = [title.split(" (")[0] for _, title in found if "subnets" in title]
    assert tiers == groups * len(spec.regions)
    # The cluster sits one level inside the tier its nodes use: public-only's one group, else the private one.
    node_tier = groups[1] if len(groups) > 1 else groups[0]
    position = [t.split(" (")[0] for _, t in found].index(node_tier)
    eks = next(i for i, (_, t) in enumerate(found) if t.startswith("EKS cluster"))
    assert eks > position and found[eks][0] == found[position][0] + 1
