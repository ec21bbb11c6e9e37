"""The generated rules and config pass ``promtool check``, and ``promtool test rules`` proves the alerts fire
on bad series and stay quiet on healthy ones."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackwright.monitoring import RULES_FILE, alert_rules, dump_yaml, scrape_config
from stackwright.spec import System, load_system

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")

pytestmark = [pytest.mark.checkers,
              pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    proc = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _write_rules(system: System, folder: Path) -> Path:
    path = folder / RULES_FILE
    path.write_text(dump_yaml(alert_rules(system)))
    return path


@pytest.fixture(scope="module")
def fastapi_app() -> System:
    return load_system("fastapi-app", root=REPO)


@pytest.fixture(scope="module")
def voting() -> System:
    return load_system("voting", root=REPO)


@pytest.mark.parametrize("name", ["voting", "fastapi-app"])
def test_check_rules(name: str, tmp_path: Path) -> None:
    path = _write_rules(load_system(name, root=REPO), tmp_path)
    out = _promtool("check", "rules", path)
    assert "SUCCESS" in out.stdout


def test_check_config(voting: System, tmp_path: Path) -> None:
    _write_rules(voting, tmp_path)
    targets = {"auth": ["127.0.0.1:8100"], "vote": ["127.0.0.1:8101", "127.0.0.1:8102"],
               "results": ["127.0.0.1:8103"], "worker": ["127.0.0.1:8104"], "web": ["127.0.0.1:8105"]}
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(dump_yaml(scrape_config(voting, targets)))
    out = _promtool("check", "config", cfg)
    assert "is valid prometheus config file syntax" in out.stdout
    assert "1 rule files found" in out.stdout


# ---------------------------------------------------------------- promtool test rules

REQ = "starlette_requests_total"
BUCKET = "starlette_request_duration_seconds_bucket"


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def _traffic(service: str, ok: str, errors: str, le_fast: str, le_slow: str, total: str) -> list[dict[str, str]]:
    """Requests and a latency histogram for GET /items of one service (plus /health, which SLIs ignore)."""
    base = {"app_name": service, "method": "GET", "path": "/items"}
    return [
        _series(REQ, ok, **base, status_code="200"),
        _series(REQ, errors, **base, status_code="500"),
        # probe traffic failing must not count against the SLO
        _series(REQ, "0+600x200", app_name=service, method="GET", path="/health", status_code="503"),
        _series(BUCKET, le_fast, **base, status_code="200", le="0.1"),
        _series(BUCKET, le_fast, **base, status_code="200", le="0.25"),
        _series(BUCKET, le_slow, **base, status_code="200", le="0.5"),
        _series(BUCKET, total, **base, status_code="200", le="1"),
        _series(BUCKET, total, **base, status_code="200", le="+Inf"),
    ]


def _rule(rules: dict[str, Any], alert: str, **match: str) -> dict[str, Any]:
    return next(r for g in rules["groups"] for r in g["rules"]
                if r.get("alert") == alert and all(r["labels"].get(k) == v for k, v in match.items()))


def _expect(rule: dict[str, Any], value: str) -> dict[str, Any]:
    """The alert promtool must see: the rule's labels and its annotations rendered for ``value``."""
    annotations = {
        k: v.replace("{{ $value | humanizePercentage }}", value).replace("{{ $value | humanizeDuration }}", value)
             .replace("{{ $value }}", value)
        for k, v in rule["annotations"].items()
    }
    return {"exp_labels": dict(rule["labels"]), "exp_annotations": annotations}


def _alert_test(rule: dict[str, Any], eval_time: str, fires: bool, value: str = "") -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": rule["alert"], "exp_alerts": [_expect(rule, value)] if fires else []}


def test_burn_rate_and_latency_alerts_fire_and_stay_quiet(fastapi_app: System, tmp_path: Path) -> None:
    rules = alert_rules(fastapi_app)
    _write_rules(fastapi_app, tmp_path)
    fast = _rule(rules, "SLOErrorBudgetBurnFast", service="api")
    slow = _rule(rules, "SLOErrorBudgetBurnSlow", service="api")
    ticket = _rule(rules, "SLOErrorBudgetBurnTicket", service="api")
    latency = _rule(rules, "SLOLatencyP99High", service="api")
    burn_alerts = (fast, slow, ticket)
    fast_hist = {"le_fast": "0+750x200", "le_slow": "0+750x200", "total": "0+750x200"}
    slow_hist = {"le_fast": "0+0x200", "le_slow": "0+0x200", "total": "0+600x200"}  # all in (0.5s, 1s]
    tests = [
        {   # 20% of requests fail (budget 0.1%): fast burn pages within minutes, slow burn and ticket follow
            "interval": "1m",
            "input_series": _traffic("api", ok="0+600x200", errors="0+150x200", **fast_hist),
            "alert_rule_test": [
                _alert_test(fast, "10m", True, "20%"), _alert_test(slow, "10m", False),
                _alert_test(ticket, "10m", False), _alert_test(latency, "10m", False),
                _alert_test(fast, "30m", True, "20%"), _alert_test(slow, "30m", True, "20%"),
                _alert_test(ticket, "30m", False),
                _alert_test(fast, "70m", True, "20%"), _alert_test(slow, "70m", True, "20%"),
                _alert_test(ticket, "70m", True, "20%"),
            ],
            "promql_expr_test": [{
                "expr": "round(service:http_error_ratio:rate5m * 1000)", "eval_time": "10m",
                "exp_samples": [{"labels": '{service="api", system="fastapi-app"}', "value": 200}],
            }],
        },
        {   # healthy: 0.05% errors (half the budget), fast responses; /health failing does not count
            "interval": "1m",
            "input_series": _traffic("api", ok="0+600x200", errors="0+0.3x200", **fast_hist),
            "alert_rule_test": [_alert_test(a, t, False) for t in ("10m", "30m", "70m", "190m")
                                for a in (*burn_alerts, latency)],
        },
        {   # a 5-minute error spike: the long window remembers it, the short one shows it is over -> no page
            "interval": "1m",
            "input_series": _traffic("api", ok="0+600x200", errors="0+150x5 750+0x195", **fast_hist),
            "alert_rule_test": [_alert_test(fast, "40m", False), _alert_test(slow, "40m", False)],
        },
        {   # slow: every request takes 0.5-1 s, p99 ~ 995 ms against a 500 ms SLO
            "interval": "1m",
            "input_series": _traffic("api", ok="0+600x200", errors="0+0x200", **slow_hist),
            "alert_rule_test": [_alert_test(latency, "5m", False), _alert_test(latency, "15m", True, "995ms"),
                                _alert_test(fast, "15m", False)],
        },
    ]
    test_file = tmp_path / "slo_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [RULES_FILE], "evaluation_interval": "1m",
                                         "tests": tests}, sort_keys=False))
    out = _promtool("test", "rules", test_file)
    assert "SUCCESS" in out.stdout


def test_queue_alerts_fire_and_stay_quiet(voting: System, tmp_path: Path) -> None:
    rules = alert_rules(voting)
    _write_rules(voting, tmp_path)
    dlq = _rule(rules, "QueueDLQNotEmpty", queue="votes")
    lag = _rule(rules, "WorkerLagHigh", queue="votes")
    crit = _rule(rules, "WorkerLagCritical", queue="votes")
    backlog = _rule(rules, "QueueBacklogHigh", queue="votes")
    two_workers = [{"instance": "w1"}, {"instance": "w2"}]
    tests = [
        {   # 3 dead letters, workers 2-4 minutes behind, backlog 25k (max over both worker replicas)
            "interval": "1m",
            "input_series": [
                *[_series("stackwright_queue_dlq_depth", "3x30", queue="votes", **w) for w in two_workers],
                _series("stackwright_worker_lag_seconds", "240x30", queue="votes", instance="w1"),
                _series("stackwright_worker_lag_seconds", "120x30", queue="votes", instance="w2"),
                _series("stackwright_queue_depth", "25000x30", queue="votes", instance="w1"),
            ],
            "alert_rule_test": [
                _alert_test(dlq, "5m", True, "3"), _alert_test(lag, "10m", True, "4m 0s"),
                _alert_test(crit, "10m", False), _alert_test(backlog, "5m", False),
                _alert_test(backlog, "15m", True, "25000"),
            ],
        },
        {   # healthy: empty DLQ, lag of seconds, small backlog
            "interval": "1m",
            "input_series": [
                _series("stackwright_queue_dlq_depth", "0x30", queue="votes", instance="w1"),
                _series("stackwright_worker_lag_seconds", "2x30", queue="votes", instance="w1"),
                _series("stackwright_queue_depth", "150x30", queue="votes", instance="w1"),
            ],
            "alert_rule_test": [_alert_test(a, "20m", False) for a in (dlq, lag, crit, backlog)],
        },
    ]
    test_file = tmp_path / "queue_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [RULES_FILE], "evaluation_interval": "1m",
                                         "tests": tests}, sort_keys=False))
    out = _promtool("test", "rules", test_file)
    assert "SUCCESS" in out.stdout


def test_dependency_down_fires_only_when_every_replica_fails(voting: System, tmp_path: Path) -> None:
    rules = alert_rules(voting)
    _write_rules(voting, tmp_path)
    rule = _rule(rules, "DependencyDown", service="vote")
    expected = {"exp_labels": {**rule["labels"], "dependency": "cache"},
                "exp_annotations": {k: v.replace("{{ $labels.dependency }}", "cache")
                                    for k, v in rule["annotations"].items()}}
    tests = [
        {   # both replicas lose Redis after 5 minutes; the database stays up
            "interval": "1m",
            "input_series": [
                _series("stackwright_dependency_up", "1x5 0x20", app_name="vote", dependency="cache", instance="a"),
                _series("stackwright_dependency_up", "1x5 0x20", app_name="vote", dependency="cache", instance="b"),
                _series("stackwright_dependency_up", "1x25", app_name="vote", dependency="db", instance="a"),
            ],
            "alert_rule_test": [{"eval_time": "6m", "alertname": "DependencyDown", "exp_alerts": []},
                                {"eval_time": "10m", "alertname": "DependencyDown", "exp_alerts": [expected]}],
        },
        {   # one replica cut off (its own network), the other still reaches Redis: not an outage of Redis
            "interval": "1m",
            "input_series": [
                _series("stackwright_dependency_up", "0x20", app_name="vote", dependency="cache", instance="a"),
                _series("stackwright_dependency_up", "1x20", app_name="vote", dependency="cache", instance="b"),
            ],
            "alert_rule_test": [{"eval_time": "15m", "alertname": "DependencyDown", "exp_alerts": []}],
        },
    ]
    test_file = tmp_path / "dependency_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [RULES_FILE], "evaluation_interval": "1m",
                                         "tests": tests}, sort_keys=False))
    out = _promtool("test", "rules", test_file)
    assert "SUCCESS" in out.stdout
