"""`stackwright plan` reconciles seed 001's cost section (the spec's reference_cost) with itself and the plan."""

from __future__ import annotations

from pathlib import Path

from stackwright.plan import build_plan
from stackwright.plan.document import to_markdown
from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"


def test_plan_reconciles_the_seeds_cost_section() -> None:
    plan = build_plan(load_system(SPEC))
    ref = plan.reference
    assert ref is not None
    sections = {s.name: s for s in ref.sections}
    assert ref.stated_total == 20_546
    assert ref.sections_total == 41_126  # the seed's own section totals
    # By the seed's own lines the nodes are 1,093 + 1,117 + 276 - 1,390 - 600, and Redis on demand 798:
    assert sections["Worker nodes (average 30)"].lines_sum == 496
    assert sections["ElastiCache Redis (reserved)"].lines_sum == 798
    assert ref.corrected_total == 38_205
    (spot,) = ref.line_checks  # every other line's arithmetic checks out within $5
    assert spot.item.startswith("spot discount") and spot.computed == -1_491.6
    issues = ref.issues()
    assert "the total states $20,546, its sections as stated add up to $41,126" in issues
    assert sections["Aurora PostgreSQL (100 tenant databases)"].plan_usd == plan.cost.subtotal(category="database")
    text = to_markdown(plan)
    assert "### Reference estimate reconciled: seed 001" in text and "-$1,390" in text
