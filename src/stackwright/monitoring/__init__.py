"""Monitoring generated from a system spec: Prometheus rules and config, Grafana dashboards, local Prometheus.

Label conventions are documented in :mod:`stackwright.monitoring.conventions`.
"""

from .bundle import docker_compose, dump_yaml, scrape_config, write_monitoring_bundle
from .conventions import DATASOURCE_UID, RULES_FILE, http_services
from .dashboard import grafana_dashboard
from .prometheus import LocalPrometheus, PrometheusError, query, service_metrics
from .rules import BURN_WINDOWS, alert_rules, error_budget

__all__ = [
    "BURN_WINDOWS", "DATASOURCE_UID", "RULES_FILE", "LocalPrometheus", "PrometheusError", "alert_rules",
    "docker_compose", "dump_yaml", "error_budget", "grafana_dashboard", "http_services", "query",
    "scrape_config", "service_metrics", "write_monitoring_bundle",
]
