"""Prometheus request metrics with starlette-exporter's names, so dashboards work for every service.

A lean ASGI middleware: the route template (``/polls/{id}``) is read from ``scope["route"]`` after
routing, so label cardinality stays bounded without re-matching routes per request.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("starlette_requests", "HTTP requests", ["app_name", "method", "path", "status_code"])
DURATION = Histogram("starlette_request_duration_seconds", "HTTP request duration",
                     ["app_name", "method", "path", "status_code"], buckets=BUCKETS)
IN_PROGRESS = Gauge("starlette_requests_in_progress", "HTTP requests in progress", ["app_name", "method"])

QUEUE_DEPTH = Gauge("stackwright_queue_depth", "Messages waiting or in flight", ["queue"])
DLQ_DEPTH = Gauge("stackwright_queue_dlq_depth", "Messages in the dead-letter queue", ["queue"])
WORKER_LAG = Gauge("stackwright_worker_lag_seconds", "Age of the last message processed at processing time",
                   ["queue"])
# 1 when the service's last check of a dependency (Postgres, Redis, a queue) passed, else 0. Readiness does
# not follow dependencies (a shared outage would unready every pod at once), so this is where it shows.
DEPENDENCY_UP = Gauge("stackwright_dependency_up", "1 if the last check of a dependency passed, else 0",
                      ["app_name", "dependency"])
# A read pool on a replica (<R>_READ_URL): how far it is behind, sampled with the dependency checks. The series
# the ReplicationLagHigh rule fires on, from the services that read the replica (on EKS as locally).
REPLICATION_LAG = Gauge("stackwright_replication_lag_seconds", "Seconds the region's replica is behind the primary",
                        ["system", "resource", "region"])
PROCESSED = Counter("stackwright_messages_processed", "Messages handled by workers", ["queue", "outcome"])

UNMATCHED = "__unmatched__"
SKIP_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/health"})


class RouteMetrics:
    """The labelled children of the request metrics of one app, made once per label values.

    prometheus_client's ``labels()`` stringifies every value and takes a lock per call, three calls per
    request (py-spy: ~10% of the edge gateway's samples on the vote route). Bounded like the series
    themselves: methods x route templates x statuses."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name
        self._in_progress: dict[str, Any] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def in_progress(self, method: str) -> Any:
        """The in-flight gauge child of ``method``."""
        found = self._in_progress.get(method)
        if found is None:
            found = self._in_progress[method] = IN_PROGRESS.labels(self.app_name, method)
        return found

    def children(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        """The (request counter, duration histogram) children of one method, route template and status."""
        key = (method, path, status)
        found = self._children.get(key)
        if found is None:
            labels = (self.app_name, method, path, str(status))
            found = self._children[key] = (REQUESTS.labels(*labels), DURATION.labels(*labels))
        return found


class MetricsMiddleware:
    """Count requests, time them and track in-flight requests, labelled by route template."""

    def __init__(self, app: ASGIApp, app_name: str, skip_paths: frozenset[str] | None = None) -> None:
        self.app = app
        self.app_name = app_name
        # Paths not counted (default SKIP_PATHS: a service's own probes and scrapes).
        self.skip_paths = SKIP_PATHS if skip_paths is None else skip_paths
        self.metrics = RouteMetrics(app_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500
        in_progress = self.metrics.in_progress(method)
        in_progress.inc()
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            count, duration = self.metrics.children(method, path, status)
            count.inc()
            duration.observe(time.perf_counter() - start)
            in_progress.dec()


def metrics_endpoint(registry: CollectorRegistry = REGISTRY):
    """A handler serving the Prometheus text format."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
