"""Plan prices a bucket's storage by class: the lifecycle's ages over a steady upload rate."""

from __future__ import annotations

import pytest

from stackwright.resources.bucket import BucketResource, storage_class_shares


def bucket(**kw: object) -> BucketResource:
    return BucketResource.model_validate({"kind": "bucket", **kw})


def test_steady_uploads_split_by_transition_ages() -> None:
    # 20,000 GB at 2,000 GB/month is 10 months (300 days) of data: 30 days STANDARD, 60 IA, 210 GLACIER.
    res = bucket(storage_gb=20000, monthly_upload_gb=2000, lifecycle=[
        {"after_days": 30, "storage_class": "STANDARD_IA"}, {"after_days": 90, "storage_class": "GLACIER"}])
    shares = dict(storage_class_shares(res))
    assert shares == pytest.approx({"STANDARD": 0.1, "STANDARD_IA": 0.2, "GLACIER": 0.7})


def test_young_data_never_reaches_the_later_classes() -> None:
    res = bucket(storage_gb=100, monthly_upload_gb=100, lifecycle=[{"after_days": 90, "storage_class": "GLACIER"}])
    assert storage_class_shares(res) == [("STANDARD", 1.0)]


def test_expiry_ends_the_span() -> None:
    res = bucket(storage_gb=1000, monthly_upload_gb=10, lifecycle=[
        {"after_days": 30, "storage_class": "GLACIER"}, {"after_days": 60, "storage_class": "EXPIRE"}])
    assert dict(storage_class_shares(res)) == pytest.approx({"STANDARD": 0.5, "GLACIER": 0.5})


def test_unknown_upload_rate_is_all_standard() -> None:
    res = bucket(storage_gb=500, lifecycle=[{"after_days": 30, "storage_class": "GLACIER"}])
    assert storage_class_shares(res) == [("STANDARD", 1.0)]


def test_plan_lists_the_spec_slos() -> None:
    from stackwright.plan.builder import slo_rows
    from stackwright.spec import System

    system = System.model_validate({
        "name": "s", "regions": [{"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16"}],
        "cluster": {"node_pools": [{"name": "g", "instance_types": ["m6i.large"], "min": 1, "max": 2}]},
        "services": {"api": {"routes": [{"path": "/x"}]}},
        "slo": {"peak_rps": 10000, "latency_p95_ms": 200, "error_rate_percent": 1, "availability": 99.9,
                "rto_minutes": 15}})
    rows = dict(slo_rows(system))
    assert rows["latency p95"] == "< 200 ms"
    assert rows["error rate (5xx)"] == "< 1%"
    assert rows["throughput (peak)"] == "10,000 req/s"
    assert rows["recovery time (RTO / MTTR)"] == "< 15 min"
