"""Data store limits (PostgreSQL connections, Redis clients and memory), read/write roles in the diagrams,
one edge order, sources named in the document, and the permissions of written files."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import pytest

from stackwright.plan import build_plan, write_plan
from stackwright.plan.datastores import pg_max_connections
from stackwright.plan.document import to_markdown
from stackwright.spec import System
from tests.plan.specs import SEED_003, make_system


def _rds_system(replicas_max: int = 150, pool_max: int = 50) -> System:
    data = copy.deepcopy(SEED_003)
    data["resources"] = {"db": {"kind": "postgres", "engine": "rds-postgresql", "instance_class": "db.t4g.medium",
                                "instances": 1, "multi_az": False, "pool": {"min": 2, "max": pool_max}}}
    data["services"]["api"]["replicas"] = {"min": 2, "max": replicas_max}
    return make_system(data)


def test_max_connections_follows_the_rds_formula() -> None:
    assert pg_max_connections("db.t4g.medium") == 450          # 4 GiB / 9,531,392
    assert pg_max_connections("db.r6g.large") == 1802          # 16 GiB / 9,531,392
    assert pg_max_connections("db.r6g.4xlarge") == 5000        # capped


def test_too_many_database_connections_is_a_high_finding() -> None:
    plan = build_plan(_rds_system())
    row = next(x for x in plan.capacity.limits if x.component == "PostgreSQL db primary connections")
    # 150 replicas + 25% surge (38) = 188 pods x pool.max 50
    assert (row.limit, row.demand) == (450, 188 * 50)
    high = [f for f in plan.findings if f.severity == "high" and "connections" in f.message]
    assert len(high) == 1 and "9,400 connections" in high[0].message and "450" in high[0].message
    assert high[0].where == "resources.db.pool.max"
    md = to_markdown(plan)
    assert "| PostgreSQL db primary connections | 450 connections | 9,400 connections |" in md


def test_connections_within_the_limit_give_no_finding() -> None:
    plan = build_plan(_rds_system(replicas_max=10, pool_max=10))
    assert not [f for f in plan.findings if "connections" in f.message]


def test_voting_writers_at_the_primary_readers_at_replicas(voting: System) -> None:
    plan = build_plan(voting)
    rows = {(x.region, x.component): x for x in plan.capacity.limits}
    writer = rows[("us-east-1", "PostgreSQL db primary connections")]
    # vote (100 + 25) and worker (20 + 5) pods x pool 20, from all three regions; results (GET only) read
    assert (writer.limit, writer.demand) == (5000, (125 + 25) * 20 * 3)
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        assert rows[(region, "PostgreSQL db read replica connections (each of 1)")].demand == 38 * 20
    assert any(f.severity == "high" and "9,000 connections" in f.message for f in plan.findings)


def test_redis_maxclients() -> None:
    data = copy.deepcopy(SEED_003)
    data["resources"] = {"cache": {"kind": "redis", "node_type": "cache.r6g.large"}}
    data["services"]["api"].update(uses=["cache"], replicas={"min": 2, "max": 300})
    plan = build_plan(make_system(data))
    row = next(x for x in plan.capacity.limits if x.component == "Redis cache clients per node")
    assert (row.limit, row.demand) == (65000, 375 * 201)
    assert any(f.severity == "high" and "75,375 client connections" in f.message for f in plan.findings)


def _redis_memory(retention: str | None, bytes_per_key: int = 180, requests_millions: float = 3000) -> System:
    data = copy.deepcopy(SEED_003)
    keys = {"pattern": "voted:<poll>:<user>", "created_by": "api", "bytes_per_key": bytes_per_key}
    if retention:
        keys["retention"] = retention
    data["resources"] = {"cache": {"kind": "redis", "node_type": "cache.r6g.large", "keys": [keys]}}
    data["services"]["api"]["uses"] = ["cache"]
    data["usage"] = {**data["usage"], "requests_millions": requests_millions}
    return make_system(data)


CAPACITY_GB = 13.07 * 1024 ** 3 * 0.75 / 1e9   # cache.r6g.large less 25% reserved memory


def test_redis_memory_rate_times_retention() -> None:
    plan = build_plan(_redis_memory("730h"))   # a month: all 3,000 M keys retained
    row = next(x for x in plan.capacity.limits if x.component == "Redis cache memory")
    assert row.limit == pytest.approx(CAPACITY_GB)
    assert row.demand == pytest.approx(3000e6 * 180 / 1e9)
    assert any(f.severity == "high" and f.where == "resources.cache.node_type" for f in plan.findings)


def test_short_retention_fits() -> None:
    plan = build_plan(_redis_memory("1h", requests_millions=10))   # at most 200 rps x 3,600 s keys
    row = next(x for x in plan.capacity.limits if x.component == "Redis cache memory")
    assert row.demand == pytest.approx(200 * 3600 * 180 / 1e9)
    assert not [f for f in plan.findings if "Redis cache" in f.message]


def test_keys_without_retention_fill_the_node() -> None:
    plan = build_plan(_redis_memory(None, bytes_per_key=16, requests_millions=100))
    grow = [f for f in plan.findings if "without retention" in f.message]
    months = CAPACITY_GB / (100e6 * 16 / 1e9)
    assert len(grow) == 1 and f"in {months:,.1f} months" in grow[0].message and grow[0].severity == "high"


def test_voting_redis_memory_is_estimated(voting: System) -> None:
    plan = build_plan(voting)
    row = next(x for x in plan.capacity.limits if x.region == "us-east-1" and x.component == "Redis cache memory")
    assert row.assessed and row.demand > row.limit
    assert any("Redis cache in us-east-1 retains up to" in f.message for f in plan.findings)


def test_read_only_service_reads_from_replicas(voting: System) -> None:
    plan = build_plan(voting)
    diagrams = {d.name: d.source for d in plan.diagrams}
    results = diagrams["sequence-results"]
    assert "writes" not in results and "SQL reads (the reader endpoint in the primary region" in results
    assert "SQL (writes go to the primary in us-east-1)" in diagrams["sequence-vote"]
    deploy = diagrams["deployment"]
    assert "W_us_east_1_results -->|reads, reader endpoint| D_us_east_1_db" in deploy
    assert "W_us_east_1_results --> D_us_east_1_db" not in deploy
    assert "W_eu_west_1_results -.->|writes|" not in deploy
    assert "W_eu_west_1_vote -.->|writes| D_us_east_1_db" in deploy


def _order(source: str, names: list[str]) -> list[str]:
    return sorted((n for n in names if n in source), key=source.index)


def test_one_edge_order_everywhere(voting: System) -> None:
    plan = build_plan(voting)
    deploy = next(d.source for d in plan.diagrams if d.name == "deployment")
    assert "Route53 --> CloudFront" in deploy and "CloudFront --> WAF" in deploy
    assert "WAF --> CloudFront" not in deploy
    web = next(d.source for d in plan.diagrams if d.name == "sequence-web")
    assert _order(web, ["participant R53", "participant CDN", "participant WAF", "participant LB"]) == [
        "participant R53", "participant CDN", "participant WAF", "participant LB"]


def test_document_names_only_sources_in_the_repo(voting: System) -> None:
    md = to_markdown(build_plan(voting))
    assert "reference/" not in md and "performance-anchors" not in md


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_ordinary_permissions(voting: System, tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        written = write_plan(build_plan(voting), tmp_path / "out", "json", svg=False)
    finally:
        os.umask(old)
    assert {p.name for p in written} == {"ARCHITECTURE.md", "architecture.json"}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_monitoring_bundle_files_get_ordinary_permissions(voting: System, tmp_path: Path) -> None:
    from stackwright.monitoring.bundle import write_monitoring_bundle

    old = os.umask(0o027)
    try:
        written = write_monitoring_bundle(voting, tmp_path / "mon")
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}
