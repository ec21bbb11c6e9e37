"""The replication lag alert: one per database copied to other regions, at the spec's RPO."""

from __future__ import annotations

from pathlib import Path

from stackwright.monitoring.rules import alert_rules
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]


def test_multi_region_database_gets_a_lag_alert_at_the_rpo() -> None:
    voting = load_system(ROOT / "systems" / "voting" / "system.yaml")
    groups = {g["name"]: g for g in alert_rules(voting)["groups"]}
    rules = groups["stackwright.voting.replication"]["rules"]
    alert = next(r for r in rules if r.get("alert") == "ReplicationLagHigh")
    assert alert["expr"] == 'region:stackwright_replication_lag_seconds:max{resource="db", system="voting"} > 5'
    assert alert["labels"]["severity"] == "page"
    record = next(r for r in rules if "record" in r)
    assert "stackwright_replication_lag_seconds" in record["expr"] and record["labels"]["resource"] == "db"


def test_single_region_system_has_no_replication_group() -> None:
    app = load_system(ROOT / "systems" / "fastapi-app" / "system.yaml")
    assert len(app.regions) == 1
    assert not [g for g in alert_rules(app)["groups"] if g["name"].endswith(".replication")]
