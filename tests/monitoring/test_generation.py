"""Rules, dashboard, scrape config and bundle generated from the real specs (no external tools needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stackwright.monitoring import (
    BURN_WINDOWS,
    alert_rules,
    error_budget,
    grafana_dashboard,
    scrape_config,
    write_monitoring_bundle,
)
from stackwright.spec import System, load_system

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def voting() -> System:
    return load_system("voting", root=REPO)


@pytest.fixture(scope="module")
def fastapi_app() -> System:
    return load_system("fastapi-app", root=REPO)


def _alerts(rules: dict) -> list[dict]:
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_error_budget_from_availability(voting: System, fastapi_app: System) -> None:
    assert error_budget(voting) == pytest.approx(0.0005)
    assert error_budget(fastapi_app) == pytest.approx(0.001)


def test_every_http_service_gets_burn_rate_and_latency_alerts(voting: System) -> None:
    alerts = _alerts(alert_rules(voting))
    http = [n for n, s in voting.services.items() if s.kind != "worker"]
    for name in http:
        mine = {a["alert"]: a for a in alerts if a["labels"].get("service") == name}
        assert set(mine) >= {w.alert for w in BURN_WINDOWS} | {"SLOLatencyP99High", "ServiceDown"}
        fast = mine["SLOErrorBudgetBurnFast"]
        assert "rate1h" in fast["expr"] and "rate5m" in fast["expr"] and "(14.4 * 0.0005)" in fast["expr"]
        assert fast["labels"]["severity"] == "page"
        assert mine["SLOErrorBudgetBurnTicket"]["labels"]["severity"] == "ticket"
        assert "> 0.2" in mine["SLOLatencyP99High"]["expr"]  # 200 ms p99 SLO
    # the worker serves no HTTP traffic, so it has no HTTP SLO alerts
    assert not [a for a in alerts if a["labels"].get("service") == "worker"]


def test_queue_alerts_only_where_there_are_queues(voting: System, fastapi_app: System) -> None:
    names = {a["alert"] for a in _alerts(alert_rules(voting)) if "queue" in a["labels"]}
    assert names == {"QueueDLQNotEmpty", "QueueBacklogHigh", "WorkerLagHigh", "WorkerLagCritical"}
    backlog = next(a for a in _alerts(alert_rules(voting)) if a["alert"] == "QueueBacklogHigh")
    assert backlog["expr"].endswith("> 20000")  # KEDA target 1000 x 20 workers
    assert not [a for a in _alerts(alert_rules(fastapi_app)) if "queue" in a["labels"]]


def test_recording_rules_carry_the_label_convention(fastapi_app: System) -> None:
    records = [r for g in alert_rules(fastapi_app)["groups"] for r in g["rules"] if "record" in r]
    assert {r["record"] for r in records} >= {
        "service:http_requests:rate5m", "service:http_error_ratio:rate1h", "service:http_error_ratio:rate3d",
        "service:http_request_duration_seconds:p95_5m", "service:http_request_duration_seconds:p99_5m",
        "service:http_requests_in_progress:sum",
    }
    for r in records:
        assert r["labels"] == {"system": "fastapi-app", "service": "api"}
        assert 'app_name="api"' in r["expr"]


def test_dashboard_has_the_seed_panels_per_service_and_queue_panels(voting: System, fastapi_app: System) -> None:
    dash = grafana_dashboard(fastapi_app)
    titles = [p["title"] for p in dash["panels"] if p["type"] == "timeseries"]
    assert titles == ["Request rate", "Response time (p95)", "Error rate", "Active requests"]
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in ("starlette_requests_total", "starlette_request_duration_seconds_bucket",
                   "starlette_requests_in_progress"):
        assert metric in exprs
    v = grafana_dashboard(voting)
    rows = [p["title"].split(":")[0] for p in v["panels"] if p["type"] == "row"]
    assert rows == ["auth (api)", "vote (api)", "results (api)", "web (web)", "queue votes"]
    queue_titles = [p["title"] for p in v["panels"] if p["type"] == "timeseries"][-4:]
    assert queue_titles == ["Queue depth", "Dead-letter queue", "Worker lag", "Messages processed"]
    ids = [p["id"] for p in v["panels"]]
    assert ids == sorted(set(ids))
    assert json.dumps(grafana_dashboard(voting)) == json.dumps(v)  # deterministic


def test_scrape_config_one_job_per_service(voting: System) -> None:
    cfg = scrape_config(voting, {"vote": ["127.0.0.1:8101", "127.0.0.1:8102"], "auth": ["127.0.0.1:8100"]})
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["auth", "vote"]  # spec order
    vote = cfg["scrape_configs"][1]
    assert vote["static_configs"][0] == {"targets": ["127.0.0.1:8101", "127.0.0.1:8102"],
                                         "labels": {"service": "vote", "system": "voting"}}
    assert cfg["rule_files"] == ["alert_rules.yml"]
    assert cfg["global"]["scrape_interval"] == "5s"
    # non-service targets (the local gateway) are scraped too, labelled as a component
    extra = scrape_config(voting, {"edge": ["127.0.0.1:8080"], "web": ["127.0.0.1:8105"]})
    assert [j["job_name"] for j in extra["scrape_configs"]] == ["web", "edge"]
    assert extra["scrape_configs"][1]["static_configs"][0]["labels"] == {"component": "edge", "system": "voting"}
    with pytest.raises(ValueError, match="not a job"):
        scrape_config(voting, {"not a job": ["127.0.0.1:1"]})


def test_bundle_is_complete_and_deterministic(tmp_path: Path, fastapi_app: System) -> None:
    first = write_monitoring_bundle(fastapi_app, tmp_path / "a")
    write_monitoring_bundle(fastapi_app, tmp_path / "b")
    rel = sorted(str(p.relative_to(tmp_path / "a")) for p in first)
    assert rel == sorted([
        "docker-compose.yml", "prometheus/prometheus.yml", "prometheus/alert_rules.yml",
        "grafana/provisioning/datasources/datasource.yml", "grafana/provisioning/dashboards/dashboards.yml",
        "grafana/dashboards/fastapi-app.json",
    ])
    for r in rel:
        assert (tmp_path / "a" / r).read_bytes() == (tmp_path / "b" / r).read_bytes()
    compose = yaml.safe_load((tmp_path / "a" / "docker-compose.yml").read_text())
    assert compose["services"]["grafana"]["ports"] == ["3001:3000"]
    assert compose["services"]["prometheus"]["ports"] == ["9090:9090"]
    prom = yaml.safe_load((tmp_path / "a" / "prometheus/prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["host.docker.internal:8000"]
    rules_text = (tmp_path / "a" / "prometheus/alert_rules.yml").read_text()
    assert "&id" not in rules_text and "*id" not in rules_text  # no YAML anchors
