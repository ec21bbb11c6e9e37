"""Monitoring objects for the Prometheus operator and Grafana: a ServiceMonitor for every service, a
PrometheusRule with the SLO alerts and the Grafana dashboard as a ConfigMap.

Rule and dashboard content comes from :mod:`stackwright.monitoring` (the same rules ``promtool`` tests
and the local Prometheus loads); a minimal built-in rule set stands in when that package is absent.
"""

from __future__ import annotations

import json
from typing import Any

from ...deploy import names as naming
from ...spec import System
from .context import COMPONENT, PART_OF, Target, obj
from .rollout import HASH_LABEL
from .workload import PLATFORM_PORT_NAME

MONITORING_API = "monitoring.coreos.com/v1"
SCRAPE_INTERVAL = "15s"
#: Service components that Prometheus scrapes (the NLB "edge" Services are left out).
SCRAPED_COMPONENTS = ["api", "web", "worker"]


def service_monitor(t: Target) -> dict[str, Any]:
    """One ServiceMonitor scraping /metrics on port ``platform`` of every service of the system.

    ``job`` is the Service name (= service name), ``system`` is added by relabeling, and the Argo
    Rollouts pod-template hash is kept so canary analysis can tell canary from stable pods.
    """
    key, value = naming.MONITORING_SELECTOR_LABEL
    spec = {
        "selector": {
            "matchLabels": {PART_OF: t.system.name},
            "matchExpressions": [{"key": COMPONENT, "operator": "In", "values": SCRAPED_COMPONENTS}],
        },
        "namespaceSelector": {"matchNames": [t.namespace]},
        "podTargetLabels": [HASH_LABEL],
        "endpoints": [{
            "port": PLATFORM_PORT_NAME,  # the application port answers /metrics 404
            "path": "/metrics",
            "scheme": "http",
            "interval": SCRAPE_INTERVAL,
            "scrapeTimeout": "10s",
            "relabelings": [{"action": "replace", "targetLabel": "system", "replacement": t.system.name}],
        }],
    }
    return obj(MONITORING_API, "ServiceMonitor", t.meta(t.system.name, component="monitoring", labels={key: value}),
               spec=spec)


def _fallback_rules(system: System) -> dict[str, Any]:
    """Minimal SLO alerts used only when :mod:`stackwright.monitoring` is not installed."""
    budget = round(1 - system.slo.availability / 100, 10)
    p99 = system.slo.latency_p99_ms / 1000
    rules = []
    for name, svc in system.services.items():
        if svc.kind == "worker":
            continue
        sel = f'app_name="{name}"'
        rules += [
            {"alert": "SLOErrorBudgetBurnFast",
             "expr": (f'sum(rate(starlette_requests_total{{{sel},status_code=~"5.."}}[5m]))'
                      f" / sum(rate(starlette_requests_total{{{sel}}}[5m])) > (14.4 * {budget:g})"),
             "for": "2m", "labels": {"severity": "page", "service": name, "system": system.name},
             "annotations": {"summary": f"{name} is burning its error budget 14.4x too fast"}},
            {"alert": "LatencyP99High",
             "expr": (f"histogram_quantile(0.99, sum by (le) (rate(starlette_request_duration_seconds_bucket"
                      f"{{{sel}}}[5m]))) > {p99:g}"),
             "for": "10m", "labels": {"severity": "ticket", "service": name, "system": system.name},
             "annotations": {"summary": f"{name} p99 latency is above {system.slo.latency_p99_ms} ms"}},
        ]
    return {"groups": [{"name": f"stackwright.{system.name}.slo", "rules": rules}]}


def rule_groups(system: System) -> dict[str, Any]:
    """The Prometheus rule file content (``{"groups": [...]}``) for a system."""
    try:
        from ...monitoring import alert_rules
    except ImportError:
        return _fallback_rules(system)
    return alert_rules(system)


def prometheus_rule(t: Target) -> dict[str, Any]:
    """PrometheusRule carrying the recording rules and SLO alerts."""
    key, value = naming.MONITORING_SELECTOR_LABEL
    meta = t.meta(t.system.name, component="monitoring", labels={key: value})
    return obj(MONITORING_API, "PrometheusRule", meta, spec=rule_groups(t.system))


def dashboard_json(system: System) -> dict[str, Any] | None:
    """The Grafana dashboard of a system (None when :mod:`stackwright.monitoring` is absent)."""
    try:
        from ...monitoring import grafana_dashboard
    except ImportError:
        return None
    return grafana_dashboard(system)


def dashboard_config_map(t: Target) -> dict[str, Any] | None:
    """ConfigMap the Grafana sidecar imports as a dashboard."""
    dashboard = dashboard_json(t.system)
    if dashboard is None:
        return None
    key, value = naming.GRAFANA_DASHBOARD_LABEL
    meta = t.meta(f"{t.system.name}-dashboard", component="monitoring", labels={key: value})
    data = {f"{t.system.name}.json": json.dumps(dashboard, indent=2, sort_keys=True) + "\n"}
    return obj("v1", "ConfigMap", meta, data=data)


def objects(t: Target) -> list[dict[str, Any]]:
    """Monitoring objects the spec asks for (``monitoring.prometheus`` / ``monitoring.grafana``)."""
    out: list[dict[str, Any]] = []
    if t.system.monitoring.prometheus:
        out += [service_monitor(t), prometheus_rule(t)]
    if t.system.monitoring.grafana:
        board = dashboard_config_map(t)
        if board is not None:
            out.append(board)
    return out
