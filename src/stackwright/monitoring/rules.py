"""Prometheus recording and alerting rules derived from a system spec.

Availability alerts follow the multi-window, multi-burn-rate recipe of the Google SRE workbook
("Alerting on SLOs", table 5-8): an alert needs both a long window (is a real share of the error
budget gone?) and a short window (is it still burning now?) above the same burn rate.

=========  ==========  ============  =========  ===================================
severity   long        short         burn rate  error budget spent when it fires
=========  ==========  ============  =========  ===================================
page       1h          5m            14.4       2% of a 30-day budget in one hour
page       6h          30m           6          5% in six hours
ticket     3d          6h            1          10% in three days
=========  ==========  ============  =========  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..resources import kind_of
from ..spec import QueueResource, System
from ..spec.quantities import seconds
from . import conventions as c

SLO_PERIOD = "30d"


@dataclass(frozen=True)
class BurnWindow:
    """One row of the multi-window multi-burn-rate table."""

    alert: str
    long: str
    short: str
    burn_rate: float
    severity: str
    for_: str


BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("SLOErrorBudgetBurnFast", "1h", "5m", 14.4, "page", "2m"),
    BurnWindow("SLOErrorBudgetBurnSlow", "6h", "30m", 6.0, "page", "15m"),
    BurnWindow("SLOErrorBudgetBurnTicket", "3d", "6h", 1.0, "ticket", "1h"),
)

ERROR_RATIO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "6h", "3d")
LATENCY_FOR = "10m"
SERVICE_DOWN_FOR = "2m"
DEFAULT_QUEUE_DEPTH_ALERT = 10_000
MIN_WORKER_LAG_ALERT_S = 60.0


def _num(value: float) -> str:
    """A float as PromQL/YAML text without binary noise: 0.0005, 14.4, 1."""
    return format(round(value, 10), "g")


def _duration(total_seconds: float) -> str:
    """Seconds as the largest whole Prometheus duration unit: 345600 -> 4d, 90 -> 90s."""
    total = int(total_seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if total and total % size == 0:
            return f"{total // size}{unit}"
    return f"{max(total, 1)}s"


def error_budget(system: System) -> float:
    """Allowed fraction of failed requests: 1 - availability (99.9 -> 0.001)."""
    return round(1 - system.slo.availability / 100, 10)


def _labels(system: System, **extra: str) -> dict[str, str]:
    return {"system": system.name, **extra}


# ---------------------------------------------------------------- HTTP services


def _service_recording(system: System, name: str) -> dict[str, Any]:
    labels = _labels(system, service=name)
    rules: list[dict[str, Any]] = [
        {"record": "service:http_requests:rate5m", "expr": c.request_rate(name, "5m", sli=True), "labels": labels},
        {"record": "service:http_errors:rate5m", "expr": c.error_rate(name, "5m", sli=True), "labels": labels},
    ]
    rules += [
        {"record": f"service:http_error_ratio:rate{w}", "expr": c.error_ratio(name, w), "labels": labels}
        for w in ERROR_RATIO_WINDOWS
    ]
    rules += [
        {"record": "service:http_request_duration_seconds:p95_5m", "expr": c.latency_quantile(name, 0.95),
         "labels": labels},
        {"record": "service:http_request_duration_seconds:p99_5m", "expr": c.latency_quantile(name, 0.99),
         "labels": labels},
        {"record": "service:http_requests_in_progress:sum", "expr": c.in_progress(name), "labels": labels},
    ]
    return {"name": f"stackwright.{system.name}.{name}.recording", "rules": rules}


def _service_alerts(system: System, name: str) -> dict[str, Any]:
    budget = error_budget(system)
    avail = _num(system.slo.availability)
    sel = f'{{service="{name}", system="{system.name}"}}'
    rules: list[dict[str, Any]] = []
    for w in BURN_WINDOWS:
        threshold = f"({_num(w.burn_rate)} * {_num(budget)})"
        rules.append({
            "alert": w.alert,
            "expr": (f"service:http_error_ratio:rate{w.long}{sel} > {threshold}\n"
                     f"and\nservice:http_error_ratio:rate{w.short}{sel} > {threshold}"),
            "for": w.for_,
            "labels": _labels(system, service=name, severity=w.severity, slo="availability",
                              window=f"{w.long}/{w.short}"),
            "annotations": {
                "summary": f"{name} is burning its {avail}% availability error budget {_num(w.burn_rate)}x too fast",
                "description": (f"{name}: {{{{ $value | humanizePercentage }}}} of requests failed over the last "
                                f"{w.long} (and still over {w.short}); the SLO allows {_num(budget * 100)}% over "
                                f"{SLO_PERIOD}."),
            },
        })
    p99_s = system.slo.latency_p99_ms / 1000
    rules.append({
        "alert": "SLOLatencyP99High",
        "expr": f"service:http_request_duration_seconds:p99_5m{sel} > {_num(p99_s)}",
        "for": LATENCY_FOR,
        "labels": _labels(system, service=name, severity="page", slo="latency"),
        "annotations": {
            "summary": f"{name} p99 latency is above the {system.slo.latency_p99_ms} ms SLO",
            "description": f"{name}: p99 over 5m is {{{{ $value | humanizeDuration }}}} "
                           f"(SLO {system.slo.latency_p99_ms} ms) for {LATENCY_FOR}.",
        },
    })
    rules.append({
        "alert": "ServiceDown",
        "expr": f'sum(up{{job="{name}"}}) == 0',
        "for": SERVICE_DOWN_FOR,
        "labels": _labels(system, service=name, severity="page"),
        "annotations": {
            "summary": f"no replica of {name} can be scraped",
            "description": f"Every scrape target of job {name} has been down for {SERVICE_DOWN_FOR}.",
        },
    })
    rules.append({
        # Readiness ignores shared dependencies (a failover would unready every pod at once), so an outage
        # shows here: every replica of the service failing its check of one dependency.
        "alert": "DependencyDown",
        "expr": f'max by (dependency) (stackwright_dependency_up{{app_name="{name}"}}) == 0',
        "for": SERVICE_DOWN_FOR,
        "labels": _labels(system, service=name, severity="page"),
        "annotations": {
            "summary": f"{name} cannot reach {{{{ $labels.dependency }}}}",
            "description": (f"Every replica of {name} has failed its check of {{{{ $labels.dependency }}}} for "
                            f"{SERVICE_DOWN_FOR}; requests that need it answer 503."),
        },
    })
    return {"name": f"stackwright.{system.name}.{name}.alerts", "rules": rules}


# ---------------------------------------------------------------- queues


def queue_depth_threshold(system: System, queue: str) -> int:
    """Backlog beyond which workers cannot keep up: the KEDA target per replica times max replicas.

    Falls back to :data:`DEFAULT_QUEUE_DEPTH_ALERT` when no worker scales on the queue.
    """
    total = sum(
        svc.autoscale.target_queue_depth * svc.replicas.max
        for svc in system.services.values()
        if svc.autoscale and svc.autoscale.queue == queue and svc.autoscale.target_queue_depth
    )
    return total or DEFAULT_QUEUE_DEPTH_ALERT


def worker_lag_thresholds(resource: QueueResource) -> tuple[float, float]:
    """(warning, critical) lag in seconds: twice the visibility timeout (at least a minute), and half the
    retention, after which unprocessed messages are at risk of expiring."""
    warn = max(MIN_WORKER_LAG_ALERT_S, 2 * seconds(resource.visibility_timeout))
    crit = max(warn * 2, seconds(resource.retention) / 2)
    return warn, crit


def _queue_group(system: System, queue: str, resource: QueueResource) -> dict[str, Any]:
    labels = _labels(system, queue=queue)
    sel = f'{{queue="{queue}", system="{system.name}"}}'
    rules: list[dict[str, Any]] = [
        {"record": "queue:stackwright_queue_depth:max", "expr": c.queue_gauge(c.QUEUE_DEPTH, queue),
         "labels": labels},
        {"record": "queue:stackwright_worker_lag_seconds:max", "expr": c.queue_gauge(c.WORKER_LAG_SECONDS, queue),
         "labels": labels},
        {"record": "queue:stackwright_messages_processed:rate5m",
         "expr": f'sum by (outcome) (rate({c.MESSAGES_PROCESSED_TOTAL}{{queue="{queue}"}}[5m]))',
         "labels": labels},
    ]
    if resource.dlq:
        rules.append({"record": "queue:stackwright_queue_dlq_depth:max",
                      "expr": c.queue_gauge(c.QUEUE_DLQ_DEPTH, queue), "labels": labels})
        rules.append({
            "alert": "QueueDLQNotEmpty",
            "expr": f"queue:stackwright_queue_dlq_depth:max{sel} > 0",
            "for": "1m",
            "labels": _labels(system, queue=queue, severity="ticket"),
            "annotations": {
                "summary": f"messages from {queue} reached its dead-letter queue",
                "description": f"{{{{ $value }}}} messages in the {queue} DLQ failed "
                               f"{resource.max_receive_count} deliveries; inspect and redrive them.",
            },
        })
    depth = queue_depth_threshold(system, queue)
    rules.append({
        "alert": "QueueBacklogHigh",
        "expr": f"queue:stackwright_queue_depth:max{sel} > {depth}",
        "for": "10m",
        "labels": _labels(system, queue=queue, severity="ticket"),
        "annotations": {
            "summary": f"{queue} holds more messages than its workers can absorb at full scale",
            "description": f"{{{{ $value }}}} messages waiting in {queue} (alert above {depth}).",
        },
    })
    warn, crit = worker_lag_thresholds(resource)
    for alert, threshold, severity in (("WorkerLagHigh", warn, "ticket"), ("WorkerLagCritical", crit, "page")):
        rules.append({
            "alert": alert,
            "expr": f"queue:stackwright_worker_lag_seconds:max{sel} > {_num(threshold)}",
            "for": "5m",
            "labels": _labels(system, queue=queue, severity=severity),
            "annotations": {
                "summary": f"workers on {queue} are {_duration(threshold)} or more behind",
                "description": f"The oldest unprocessed message on {queue} is {{{{ $value | humanizeDuration }}}} "
                               f"old (alert above {_duration(threshold)}; retention {resource.retention}).",
            },
        })
    return {"name": f"stackwright.{system.name}.queue.{queue}", "rules": rules}


def _replication_group(system: System, stores: list[str]) -> dict[str, Any]:
    """Replica lag of databases copied to the other regions: recorded per region, and an alert when a replica
    is further behind than slo.rpo_seconds (losing the primary region then loses more than the SLO allows)."""
    rpo = system.slo.rpo_seconds
    rules: list[dict[str, Any]] = []
    for store in stores:
        sel = f'{{resource="{store}", system="{system.name}"}}'
        rules.append({"record": "region:stackwright_replication_lag_seconds:max",
                      "expr": f"max by (region) ({c.REPLICATION_LAG_SECONDS}{sel})",
                      "labels": _labels(system, resource=store)})
        rules.append({
            "alert": "ReplicationLagHigh",
            "expr": f"region:stackwright_replication_lag_seconds:max{sel} > {_num(max(rpo, 1.0))}",
            "for": "2m",
            "labels": _labels(system, resource=store, severity="page"),
            "annotations": {
                "summary": f"the {store} replica in {{{{ $labels.region }}}} is behind the primary by more than "
                           f"the RPO",
                "description": f"Replication lag {{{{ $value | humanizeDuration }}}} (slo.rpo_seconds {_num(rpo)}): "
                               f"losing the primary region now would lose more writes than the SLO allows.",
            },
        })
    return {"name": f"stackwright.{system.name}.replication", "rules": rules}


def alert_rules(system: System) -> dict[str, Any]:
    """The Prometheus rule file (``{"groups": [...]}``) for a system.

    Per HTTP service: recorded request rate, error rate, error ratio over every burn-rate window,
    p95/p99 latency and in-flight requests, then the availability burn-rate alerts, the p99 latency
    alert and a ServiceDown alert. Per queue: recorded depth, DLQ depth, worker lag and processing rate,
    with DLQ-not-empty, backlog and worker-lag alerts. Output is deterministic (spec order).
    """
    groups: list[dict[str, Any]] = []
    for name in c.http_services(system):
        groups.append(_service_recording(system, name))
        groups.append(_service_alerts(system, name))
    for queue, resource in system.resources_of("queue").items():
        assert isinstance(resource, QueueResource)
        groups.append(_queue_group(system, queue, resource))
    replicated = [n for n, r in system.resources.items() if kind_of(r).writes_to_primary and kind_of(r).regional(r)]
    if len(system.regions) > 1 and replicated:
        groups.append(_replication_group(system, replicated))
    return {"groups": groups}
