"""Totals are sums of their lines; a missing price is an error naming the item."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackwright.plan import PlanError, PriceError, build_plan, load_prices
from stackwright.plan.cost import usd
from stackwright.plan.model import CostLine, CostReport, CostScenario
from tests.plan.specs import SEED_003, make_system

VOTING_LIKE = {
    **SEED_003,
    "name": "scaled",
    "regions": [{"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16", "traffic_share": 0.6},
                {"name": "eu-west-1", "role": "secondary", "vpc_cidr": "10.1.0.0/16", "traffic_share": 0.4}],
    "network": {"azs": 3, "layout": "private", "nat": "per-az"},
    "edge": {"api_gateway": {"rps_limit": 10000}, "cdn": True},
    "resources": {
        "db": {"kind": "postgres", "instance_class": "db.r6g.large", "instances": 2, "cross_region_replicas": True,
               "storage_gb": 100, "monthly_io_millions": 50},
        "cache": {"kind": "redis", "node_type": "cache.t4g.medium", "replicas_per_shard": 1},
        "q": {"kind": "queue", "monthly_requests_millions": 10},
        "files": {"kind": "bucket", "storage_gb": 50},
    },
    "services": {
        "api": {"replicas": {"min": 2, "max": 10}, "routes": [{"path": "/api"}], "uses": ["db", "cache", "q"]},
        "worker": {"kind": "worker", "replicas": {"min": 1, "max": 4}, "uses": ["q", "db", "files"],
                   "autoscale": {"queue": "q", "target_queue_depth": 100, "cpu_percent": None}},
    },
    "usage": {},
}

money = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=2, allow_nan=False,
                    allow_infinity=False)


@given(st.lists(st.tuples(st.sampled_from(["compute", "database", "edge"]), st.sampled_from(["a", "b", "global"]),
                          money), max_size=40))
def test_report_total_is_the_sum_of_its_lines(items: list[tuple[str, str, Decimal]]) -> None:
    lines = [CostLine(cat, f"item {i}", region, 1, "unit", float(amount), amount, "k")
             for i, (cat, region, amount) in enumerate(items)]
    report = CostReport("prod", "t", "2025-01-01", "b", "s", lines, [CostScenario("x", "x", tuple(lines))], [])
    assert report.total_usd == sum((amount for _, _, amount in items), Decimal("0.00"))
    assert report.scenarios[0].total_usd == report.total_usd
    assert sum(report.subtotal(region=r) for r in ("a", "b", "global")) == report.total_usd
    assert sum(report.subtotal(category=c) for c in ("compute", "database", "edge")) == report.total_usd


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(desired=st.integers(1, 6), extra=st.integers(0, 10), instances=st.integers(1, 4),
       storage=st.integers(1, 5000), peak=st.floats(10, 50_000), egress=st.floats(0, 200_000),
       itype=st.sampled_from(["t3.large", "m6i.xlarge", "m7g.large", "c6i.2xlarge"]))
def test_scaled_specs_total_equals_lines(desired: int, extra: int, instances: int, storage: int, peak: float,
                                         egress: float, itype: str) -> None:
    data = dict(VOTING_LIKE)
    data["cluster"] = {"node_pools": [{"name": "general", "instance_types": [itype], "min": 1,
                                       "max": desired + extra, "desired": desired}]}
    data["resources"] = {**VOTING_LIKE["resources"],
                         "db": {**VOTING_LIKE["resources"]["db"], "instances": instances, "storage_gb": storage}}
    data["slo"] = {"peak_rps": peak}
    data["usage"] = {"egress_gb": egress}
    cost = build_plan(make_system(data)).cost
    assert cost.total_usd == sum(ln.monthly_usd for ln in cost.lines)
    for scenario in cost.scenarios:
        assert scenario.total_usd == sum(ln.monthly_usd for ln in scenario.lines)
        assert scenario.total_usd <= cost.total_usd
    for ln in cost.lines:
        assert ln.monthly_usd >= 0 and ln.monthly_usd == ln.monthly_usd.quantize(Decimal("0.01"))
    regions = {ln.region for ln in cost.lines}
    assert sum(cost.subtotal(region=r) for r in regions) == cost.total_usd


def test_more_nodes_never_cost_less() -> None:
    def total(desired: int) -> Decimal:
        data = {**VOTING_LIKE, "cluster": {"node_pools": [{"name": "general", "instance_types": ["m6i.xlarge"],
                                                           "min": 1, "max": 20, "desired": desired}]}}
        return build_plan(make_system(data)).cost.total_usd

    assert total(3) < total(4) < total(8)


def test_missing_price_is_an_error_naming_the_item() -> None:
    data = {**VOTING_LIKE, "resources": {**VOTING_LIKE["resources"],
                                         "cache": {"kind": "redis", "node_type": "cache.x9.huge"}}}
    with pytest.raises(PriceError, match=r"no price for 'elasticache\.cache\.x9\.huge' in aws\.yaml"):
        build_plan(make_system(data))


def test_missing_region_is_an_error_naming_it() -> None:
    data = {**SEED_003, "regions": [{"name": "me-south-1", "role": "primary", "vpc_cidr": "10.0.0.0/16"}]}
    with pytest.raises(PriceError, match="region 'me-south-1'"):
        build_plan(make_system(data))


def test_unknown_instance_type_is_an_error_naming_it() -> None:
    data = {**SEED_003, "cluster": {"node_pools": [{"name": "general", "instance_types": ["z9.mega"]}]}}
    with pytest.raises(PlanError, match=r"instance type 'z9\.mega'"):
        build_plan(make_system(data))


def test_price_table_has_a_date_and_a_source_for_every_price() -> None:
    table = load_prices()
    assert table.as_of
    for price in table.prices.values():
        assert price.source and price.as_of, price.key


def test_tiered_egress() -> None:
    table = load_prices()
    charge = table.charge("transfer.internet_egress", 20_480, "us-east-1")
    assert usd(charge) == usd(10_240 * 0.09 + 10_240 * 0.085)


def test_price_table_missing_source_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("meta: {as_of: '2025-01-01'}\ngroups:\n  ec2: {unit: hour, category: compute, prices: {a: 1}}\n")
    with pytest.raises(PlanError, match=r"groups\.ec2 needs 'source'"):
        load_prices(bad)
