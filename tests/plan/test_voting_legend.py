"""Seed 000's regional capacity legend reproduced from the voting spec."""

from __future__ import annotations

from stackwright.plan import build_plan, to_markdown
from stackwright.plan.capacity import build_capacity
from stackwright.spec import System

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")


def legend(voting: System) -> dict[str, dict[str, str]]:
    report, _ = build_capacity(voting, None)
    return {row.component: dict(row.cells) for row in report.legend}


def test_legend_matches_seed_000(voting: System) -> None:
    rows = legend(voting)
    for region in REGIONS:
        assert rows["API Gateway"][region] == "100k RPS"
        assert rows["EKS Node Group (general)"][region] == "3-10 nodes (m6i.2xlarge)"
        assert rows["Vote Service Replicas"][region] == "10-100 pods"
        assert rows["Redis Cluster (cache)"][region].startswith("3 nodes")
        assert rows["SQS Throughput (votes)"][region] == "Unlimited"
    db = rows["Aurora PostgreSQL (db)"]
    assert db["us-east-1"].startswith("Primary (db.r6g.4xlarge)")
    assert db["eu-west-1"].startswith("Read Replica") and db["ap-southeast-1"].startswith("Read Replica")


def test_legend_is_in_the_document(voting: System) -> None:
    md = to_markdown(build_plan(voting))
    assert "### Regional capacity legend" in md
    assert "| API Gateway | 100k RPS | 100k RPS | 100k RPS |" in md
    assert "| Vote Service Replicas | 10-100 pods | 10-100 pods | 10-100 pods |" in md


def test_regional_peaks_follow_traffic_share(voting: System) -> None:
    report, _ = build_capacity(voting, None)
    assert report.region_peaks == {"us-east-1": 100_000, "eu-west-1": 87_500, "ap-southeast-1": 62_500}
    vote = next(s for s in report.services if s.region == "us-east-1" and s.service == "vote")
    assert vote.throughput.source == "estimate" and "ESTIMATE" in vote.throughput.basis
    # 70% (peak_mix) of 100k rps / (600 rps per 500m replica x 60% HPA target) -> 195, over replicas.max 100
    assert voting.slo.peak_mix["vote"] == 0.7
    assert vote.throughput.rps_per_replica == 600
    assert (vote.replicas_needed, vote.replicas_at_peak, vote.short_by) == (195, 100, 95)
