"""Grafana dashboard JSON for a system: the seed's four panels per service, plus queue panels."""

from __future__ import annotations

from typing import Any

from ..spec import QueueResource, System
from . import conventions as c
from .rules import error_budget, worker_lag_thresholds

SCHEMA_VERSION = 39
PANEL_W = 6
PANEL_H = 8
_DATASOURCE = {"type": "prometheus", "uid": c.DATASOURCE_UID}


def dashboard_uid(system: System) -> str:
    """Stable dashboard uid (Grafana allows at most 40 characters)."""
    return f"stackwright-{system.name}"[:40]


class _Layout:
    """Hands out panel ids and grid positions row by row, so output is deterministic."""

    def __init__(self) -> None:
        self.next_id = 1
        self.y = 0
        self.x = 0

    def row(self, title: str) -> dict[str, Any]:
        if self.x:
            self.y += PANEL_H
            self.x = 0
        panel = {"type": "row", "id": self._id(), "title": title, "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        self.y += 1
        return panel

    def timeseries(self, title: str, targets: list[tuple[str, str]], unit: str, *, description: str = "",
                   threshold: float | None = None) -> dict[str, Any]:
        if self.x + PANEL_W > 24:
            self.y += PANEL_H
            self.x = 0
        grid = {"h": PANEL_H, "w": PANEL_W, "x": self.x, "y": self.y}
        self.x += PANEL_W
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                                  "spanNulls": False}
        if threshold is not None:
            steps.append({"color": "red", "value": threshold})
            custom["thresholdsStyle"] = {"mode": "line"}
        return {
            "type": "timeseries",
            "id": self._id(),
            "title": title,
            "description": description,
            "datasource": dict(_DATASOURCE),
            "gridPos": grid,
            "fieldConfig": {
                "defaults": {"unit": unit, "min": 0, "custom": custom,
                             "thresholds": {"mode": "absolute", "steps": steps}},
                "overrides": [],
            },
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": dict(_DATASOURCE), "expr": expr, "legendFormat": legend,
                 "range": True}
                for i, (expr, legend) in enumerate(targets)
            ],
        }

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _service_panels(system: System, name: str, layout: _Layout) -> list[dict[str, Any]]:
    svc = system.services[name]
    sel = c.selector(name)
    p99_s = system.slo.latency_p99_ms / 1000
    return [
        layout.row(f"{name} ({svc.kind})" + (f": {svc.description}" if svc.description else "")),
        layout.timeseries(
            "Request rate",
            [(f"sum(rate({c.REQUESTS_TOTAL}{sel}[1m]))", "total"),
             (f"sum by (status_code) (rate({c.REQUESTS_TOTAL}{sel}[1m]))", "{{status_code}}")],
            "reqps", description=f"rate({c.REQUESTS_TOTAL}[1m]) for app_name={name}",
        ),
        layout.timeseries(
            "Response time (p95)",
            [(c.latency_quantile(name, 0.95), "p95"), (c.latency_quantile(name, 0.99), "p99")],
            "s", description=f"From {c.REQUEST_DURATION_BUCKET}; the red line is the p99 SLO "
                             f"({system.slo.latency_p99_ms} ms). Probe and /metrics paths excluded.",
            threshold=p99_s,
        ),
        layout.timeseries(
            "Error rate",
            [(c.error_ratio(name, "1m"), "5xx share"),
             (c.error_rate(name, "1m"), "5xx per second")],
            "percentunit",
            description=f"Share of requests answered 5xx; the red line is the error budget "
                        f"({error_budget(system):.4%} for {system.slo.availability}% availability).",
            threshold=error_budget(system),
        ),
        layout.timeseries(
            "Active requests",
            [(c.in_progress(name), "in flight")],
            "short", description=f"{c.REQUESTS_IN_PROGRESS} summed over replicas",
        ),
    ]


def _queue_panels(system: System, queue: str, resource: QueueResource, layout: _Layout) -> list[dict[str, Any]]:
    warn, _ = worker_lag_thresholds(resource)
    panels = [
        layout.row(f"queue {queue}" + (f": {resource.description}" if resource.description else "")),
        layout.timeseries("Queue depth", [(c.queue_gauge(c.QUEUE_DEPTH, queue), "waiting")], "short",
                          description=f"max({c.QUEUE_DEPTH}) over worker replicas"),
    ]
    if resource.dlq:
        panels.append(layout.timeseries("Dead-letter queue", [(c.queue_gauge(c.QUEUE_DLQ_DEPTH, queue), "dead")],
                                        "short", description="anything above zero needs a look", threshold=1))
    panels.append(layout.timeseries("Worker lag", [(c.queue_gauge(c.WORKER_LAG_SECONDS, queue), "lag")], "s",
                                    description="age of the oldest unprocessed message", threshold=warn))
    panels.append(layout.timeseries(
        "Messages processed",
        [(f'sum by (outcome) (rate({c.MESSAGES_PROCESSED_TOTAL}{{queue="{queue}"}}[1m]))', "{{outcome}}")],
        "ops", description=f"{c.MESSAGES_PROCESSED_TOTAL} by outcome",
    ))
    return panels


def grafana_dashboard(system: System) -> dict[str, Any]:
    """Grafana dashboard JSON for ``system``.

    One row per HTTP service with the seed's panels (request rate, p95 response time, error rate, active
    requests) and one row per queue (depth, DLQ, worker lag, processed messages). Panel ids and positions
    follow spec order, so the same spec always gives the same JSON.
    """
    layout = _Layout()
    panels: list[dict[str, Any]] = []
    for name in c.http_services(system):
        panels += _service_panels(system, name, layout)
    for queue, resource in system.resources_of("queue").items():
        assert isinstance(resource, QueueResource)
        panels += _queue_panels(system, queue, resource, layout)
    return {
        "uid": dashboard_uid(system),
        "title": f"{system.name}: services and queues",
        "description": system.description,
        "tags": ["stackwright", system.name],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [],
        "panels": panels,
    }
