"""Whether the SLO is backed by alerts: reads ``stackwright.monitoring.alert_rules(system)`` when importable."""

from __future__ import annotations

from typing import Any

from ..resources import kind_of
from ..spec import System
from .model import Finding


def _alerts(rules: Any) -> list[dict[str, Any]]:
    """Every alerting rule in a Prometheus rules document (``{"groups": [{"rules": [...]}]}``) or a list."""
    found: list[dict[str, Any]] = []
    if isinstance(rules, dict):
        if "alert" in rules:
            found.append(rules)
        for value in rules.values():
            found += _alerts(value)
    elif isinstance(rules, list | tuple):
        for item in rules:
            found += _alerts(item)
    return found


def alert_coverage(system: System) -> tuple[str, list[Finding]]:
    """A one-line summary of alert coverage and a finding for each SLO promise no alert watches."""
    if not system.monitoring.prometheus:
        return "monitoring.prometheus is off: no alerts", [Finding(
            "high", "monitoring", "the SLO is not backed by any alert (monitoring.prometheus: false)",
            "monitoring.prometheus", "turn Prometheus on so SLO alerts are rendered")]
    try:
        from ..monitoring import alert_rules
    except ImportError:
        return "not checked: stackwright.monitoring is not available", []
    alerts = _alerts(alert_rules(system))
    findings: list[Finding] = []

    def has(pred: Any) -> bool:
        return any(pred(a.get("labels") or {}, str(a.get("alert", "")), str(a.get("expr", ""))) for a in alerts)

    for name, svc in system.services.items():
        if not svc.routes:
            continue
        if not has(lambda lb, _a, _e, n=name: lb.get("service") == n and lb.get("slo") == "availability"):
            findings.append(Finding("medium", "monitoring", f"slo.availability of {name} has no alert",
                                    "slo.availability", "render an error-budget burn alert for it"))
        if not has(lambda lb, _a, _e, n=name: lb.get("service") == n and lb.get("slo") == "latency"):
            findings.append(Finding("medium", "monitoring", f"slo.latency_p99_ms of {name} has no alert",
                                    "slo.latency_p99_ms", "render a p99 latency alert for it"))
    for name, res in sorted(system.resources.items()):
        expected = kind_of(res).missing_alert(name, res)
        if expected is None:
            continue
        label, text, hint = expected
        if not has(lambda lb, _a, _e, n=name, k=label: lb.get(k) == n):
            findings.append(Finding("medium", "monitoring", text, f"resources.{name}", hint))
    cross = [n for n, r in system.resources.items() if kind_of(r).replicates_across_regions(r)]
    lag = has(lambda _lb, a, e: "replica" in a.lower() or ("lag" in a.lower() and "replic" in e.lower())
              or "AuroraGlobalDBReplicationLag" in e or "ReplicaLag" in e)
    if cross and not lag:
        findings.append(Finding("medium", "monitoring",
                                f"slo.rpo_seconds ({system.slo.rpo_seconds:g} s) relies on cross-region replication "
                                f"of {', '.join(cross)} but no alert watches replication lag", "slo.rpo_seconds",
                                "alert on AuroraGlobalDBReplicationLag / ReplicaLag above the RPO"))
    return f"{len(alerts)} alerting rules from stackwright.monitoring.alert_rules", findings
