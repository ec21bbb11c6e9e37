"""Seed 003's monthly cost (~$167) reproduced from a spec."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stackwright.plan import build_plan
from stackwright.plan.model import CostReport
from stackwright.spec import load_system
from tests.plan.specs import ROOT, SEED_003, make_system

# The seed's own lines: control plane 73, 2 x t3.medium 61, Classic LB 18 + data processing 5, ECR 0.05,
# data transfer 5, CloudWatch logs 2 + metrics 3 = ~$167.
SEED_TOTAL = 167.0


def line(cost: CostReport, prefix: str) -> Decimal:
    """Monthly USD of the single line whose item starts with ``prefix``."""
    matches = [ln for ln in cost.lines if ln.item.startswith(prefix)]
    assert len(matches) == 1, [ln.item for ln in cost.lines]
    return matches[0].monthly_usd


@pytest.fixture
def classic_lb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 003 fronts the pods with a Classic LB: price what the seed describes, not what render emits now
    (plan reads the NLB choice from this annotation on the rendered Service; without it a Service is a CLB)."""
    monkeypatch.setattr("stackwright.plan.k8s.NLB_ANNOTATION", "not-an-annotation-render-sets")


@pytest.mark.usefixtures("classic_lb")
def test_seed_003_lines_from_the_seeds_numbers() -> None:
    cost = build_plan(make_system(SEED_003)).cost
    assert line(cost, "EKS control plane") == Decimal("73.00")  # $0.10 x 730 h
    assert line(cost, "Nodes general: 2 x t3.medium") == Decimal("60.74")  # $0.0416 x 2 x 730 h
    assert line(cost, "Classic Load Balancer") == Decimal("18.25")  # seed: ~$18
    assert line(cost, "Classic LB data processed") == Decimal("5.00")  # seed: ~$5
    assert line(cost, "ECR images") == Decimal("0.05")  # 500 MB x $0.10
    assert line(cost, "Internet egress") == Decimal("5.00")
    assert line(cost, "CloudWatch Logs ingestion") == Decimal("2.00")
    assert line(cost, "CloudWatch custom metrics") == Decimal("3.00")
    seed_items = ("EKS control plane", "Nodes general", "Classic Load Balancer", "Classic LB data", "ECR images",
                  "Internet egress", "CloudWatch Logs ingestion", "CloudWatch custom metrics")
    assert sum(ln.monthly_usd for ln in cost.lines if ln.item.startswith(seed_items)) == Decimal("167.04")
    # Plan also prices what the seed left out (node root volumes, Route 53 zone, a secret, log storage):
    assert float(cost.total_usd) == pytest.approx(SEED_TOTAL, rel=0.03)
    assert cost.total_usd == sum(ln.monthly_usd for ln in cost.lines)


def test_seed_003_within_its_budget_has_no_cost_finding() -> None:
    plan = build_plan(make_system(SEED_003))
    assert not [f for f in plan.findings if f.area == "cost" and f.severity == "high"]


def test_seed_003_over_budget_is_a_high_finding() -> None:
    plan = build_plan(make_system(SEED_003, slo={"peak_rps": 200, "monthly_budget_usd": 100}))
    over = [f for f in plan.findings if f.area == "cost"]
    assert over and over[0].severity == "high" and "exceeds slo.monthly_budget_usd" in over[0].message


def test_real_fastapi_app_spec_matches_seed_003() -> None:
    path = ROOT / "systems" / "fastapi-app" / "system.yaml"
    if not path.is_file():
        pytest.skip("systems/fastapi-app/system.yaml is not written yet")
    system = load_system(path)
    # The seed prices at us-east-1 list prices although it deploys to ap-southeast-1: compare like with like.
    seed_priced = system.model_copy(update={"regions": [r.model_copy(update={"name": "us-east-1"})
                                                        for r in system.regions]})
    cost = build_plan(seed_priced).cost
    assert line(cost, "EKS control plane") == Decimal("73.00")
    assert line(cost, "Nodes general: 2 x t3.medium") == Decimal("60.74")
    # The seed has a Classic LB (~$18); render may give the Service an NLB instead ($0.0225/h = $16.43).
    lbs = {ln.item.split(" (")[0]: ln.monthly_usd for ln in cost.lines if ln.unit == "LB-hours"}
    assert lbs in ({"Classic Load Balancer": Decimal("18.25")}, {"Network Load Balancer": Decimal("16.43")})
    assert float(cost.total_usd) == pytest.approx(SEED_TOTAL, rel=0.05)
    # In its own region it costs more (ap-southeast-1 list prices) but stays inside its budget.
    own = build_plan(system)
    assert own.cost.total_usd > cost.total_usd
    assert not [f for f in own.findings if f.area == "cost" and f.severity == "high"]
