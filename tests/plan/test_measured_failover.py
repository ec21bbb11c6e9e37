"""plan's failure analysis shows a recorded region failover drill next to the computed RTO/RPO and the SLO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackwright.plan import build_plan
from stackwright.plan.document import to_markdown
from stackwright.spec import System


def test_recorded_drill_is_shown_next_to_computed_and_slo(tmp_path: Path, voting: System,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    drills = tmp_path / "bench" / "drills"
    drills.mkdir(parents=True)
    (drills / "voting-region-failover.json").write_text(json.dumps({
        "commit": "sync", "rto_s": 12.34, "lost_acked": 0, "lost_span_s": 0.0, "failed_writes": 77,
        "health_check_interval_s": 10.0, "health_check_failure_threshold": 3, "failback": "pg_rewind"}))
    monkeypatch.chdir(tmp_path)  # the cwd's bench/ is looked at first
    plan = build_plan(voting)
    assert plan.failure.measured is not None and plan.failure.measured["rto_s"] == 12.34
    md = to_markdown(plan)
    section = md[md.index("### Region failover: computed and measured"):]
    row = next(line for line in section.splitlines() if line.startswith("| RTO (region loss)"))
    assert "12.3 s" in row and "300 s" in row  # measured, and voting's slo.rto_minutes 5
    assert "77 writes failed" in section
    assert any("region failover measured" in n for n in plan.notes)


def test_a_region_scope_drill_says_so(tmp_path: Path, voting: System, monkeypatch: pytest.MonkeyPatch) -> None:
    drills = tmp_path / "bench" / "drills"
    drills.mkdir(parents=True)
    (drills / "voting-region-failover.json").write_text(json.dumps({
        "commit": "async", "rto_s": 26.6, "lost_acked": 0, "lost_span_s": 0.0, "failed_writes": 339,
        "health_check_interval_s": 10.0, "health_check_failure_threshold": 3, "failback": "", "scope": "region"}))
    monkeypatch.chdir(tmp_path)
    md = to_markdown(build_plan(voting))
    section = md[md.index("### Region failover: computed and measured"):]
    assert "every process of it SIGKILLed" in section and "through the global entry" in section
    assert "26.6 s" in next(line for line in section.splitlines() if line.startswith("| RTO (region loss)"))
