"""Read a service's ``/metrics`` (Prometheus text) into what the dashboard shows, and turn two readings
into rates.

Request metrics carry starlette-exporter's names (``starlette_requests_total`` and the
``starlette_request_duration_seconds`` histogram, labelled by route template), which the runtime and the
gateway both export (see :mod:`stackwright.runtime.metrics`); queue gauges are the runtime's
``stackwright_queue_depth`` / ``stackwright_queue_dlq_depth`` / ``stackwright_worker_lag_seconds``.
Counters are cumulative, so a number per second needs two readings: :func:`window` subtracts an older
reading from a newer one, and a counter that went down means the process restarted, so the newer reading
counts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "starlette_requests_total"
PROCESSED = "stackwright_messages_processed_total"
DURATION_BUCKET = "starlette_request_duration_seconds_bucket"
QUEUE_GAUGES = {"stackwright_queue_depth": "depth", "stackwright_queue_dlq_depth": "dlq",
                "stackwright_worker_lag_seconds": "lag_s"}

Route = tuple[str, str]  # (method, path template)


@dataclass
class Reading:
    """One scrape of one process: cumulative request counts and latency buckets per route, queue gauges."""

    at: float
    requests: dict[Route, float] = field(default_factory=dict)
    errors: dict[Route, float] = field(default_factory=dict)  # 5xx answers
    buckets: dict[Route, dict[float, float]] = field(default_factory=dict)  # le -> cumulative count
    queues: dict[str, dict[str, float]] = field(default_factory=dict)
    processed: dict[str, float] = field(default_factory=dict)  # worker messages by outcome


def parse(text: str, at: float) -> Reading:
    """A :class:`Reading` of the Prometheus text exposition ``text`` (scraped at time ``at``).

    Samples are summed over the labels the dashboard does not show (status code, app name), so replicas
    and restarts add up the same way Prometheus' ``sum by`` would.
    """
    reading = Reading(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == REQUESTS:
                route = (labels.get("method", ""), labels.get("path", ""))
                reading.requests[route] = reading.requests.get(route, 0.0) + sample.value
                if labels.get("status_code", "").startswith("5"):
                    reading.errors[route] = reading.errors.get(route, 0.0) + sample.value
            elif sample.name == DURATION_BUCKET:
                route = (labels.get("method", ""), labels.get("path", ""))
                le = float(labels["le"])
                per_route = reading.buckets.setdefault(route, {})
                per_route[le] = per_route.get(le, 0.0) + sample.value
            elif sample.name == PROCESSED:
                outcome = labels.get("outcome", "")
                reading.processed[outcome] = reading.processed.get(outcome, 0.0) + sample.value
            elif sample.name in QUEUE_GAUGES and "queue" in labels:
                reading.queues.setdefault(labels["queue"], {})[QUEUE_GAUGES[sample.name]] = sample.value
    return reading


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram ({le: count}), interpolated within its bucket as
    Prometheus' ``histogram_quantile`` does; None when the histogram is empty."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # beyond the last finite bucket: its bound is all that is known
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _restarted(old: Reading, new: Reading) -> bool:
    return (any(new.requests.get(route, 0.0) < count for route, count in old.requests.items())
            or any(new.processed.get(k, 0.0) < count for k, count in old.processed.items()))


@dataclass
class RouteStats:
    """One route over a window: requests per second, 95th percentile latency and the share of 5xx."""

    method: str
    path: str
    rps: float
    p95_ms: float | None
    error_share: float | None
    total: float  # cumulative requests since the process started

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "path": self.path, "rps": self.rps, "p95_ms": self.p95_ms,
                "error_share": self.error_share, "total": self.total}


@dataclass
class Delta:
    """What happened between two readings of one or more processes (added up)."""

    seconds: float = 0.0
    requests: dict[Route, float] = field(default_factory=dict)
    errors: dict[Route, float] = field(default_factory=dict)
    buckets: dict[Route, dict[float, float]] = field(default_factory=dict)
    totals: dict[Route, float] = field(default_factory=dict)
    processed: dict[str, float] = field(default_factory=dict)  # worker messages by outcome

    def add(self, other: Delta) -> None:
        """Add another process's delta (replicas of one service); the window is the longest of them."""
        self.seconds = max(self.seconds, other.seconds)
        for mine, theirs in ((self.requests, other.requests), (self.errors, other.errors),
                             (self.totals, other.totals), (self.processed, other.processed)):
            for route, value in theirs.items():
                mine[route] = mine.get(route, 0.0) + value
        for route, per_le in other.buckets.items():
            mine_b = self.buckets.setdefault(route, {})
            for le, value in per_le.items():
                mine_b[le] = mine_b.get(le, 0.0) + value

    def routes(self) -> list[RouteStats]:
        """Per-route figures, busiest first (then by path: a stable order for the table)."""
        out = []
        for route in set(self.requests) | set(self.totals):
            n = self.requests.get(route, 0.0)
            p95 = quantile(self.buckets.get(route, {}), 0.95) if n > 0 else None
            out.append(RouteStats(
                method=route[0], path=route[1], rps=n / self.seconds if self.seconds > 0 else 0.0,
                p95_ms=None if p95 is None else p95 * 1000.0,
                error_share=self.errors.get(route, 0.0) / n if n > 0 else None,
                total=self.totals.get(route, 0.0)))
        return sorted(out, key=lambda r: (-r.rps, -r.total, r.path, r.method))

    def messages_per_s(self) -> float | None:
        """Worker messages handled per second (any outcome); None for a process that handles none."""
        if not self.processed:
            return None
        return sum(self.processed.values()) / self.seconds if self.seconds > 0 else 0.0

    def overall(self) -> RouteStats:
        """All routes together (what the topology node shows)."""
        merged = Delta(self.seconds)
        for route in set(self.requests) | set(self.totals):
            merged.add(Delta(self.seconds, {("*", "*"): self.requests.get(route, 0.0)},
                             {("*", "*"): self.errors.get(route, 0.0)},
                             {("*", "*"): self.buckets.get(route, {})}, {("*", "*"): self.totals.get(route, 0.0)}))
        routes = merged.routes()
        return routes[0] if routes else RouteStats("*", "*", 0.0, None, None, 0.0)


def window(old: Reading | None, new: Reading) -> Delta:
    """What changed from ``old`` to ``new`` (one process); with no older reading, or across a restart, the
    counts since the process started (over no measurable time, so no rate yet)."""
    if old is not None and _restarted(old, new):
        old = None
    base = old or Reading(new.at)
    delta = Delta(seconds=new.at - base.at if old is not None else 0.0, totals=dict(new.requests))
    for route, count in new.requests.items():
        delta.requests[route] = max(0.0, count - base.requests.get(route, 0.0))
    for route, count in new.errors.items():
        delta.errors[route] = max(0.0, count - base.errors.get(route, 0.0))
    for outcome, count in new.processed.items():
        delta.processed[outcome] = max(0.0, count - base.processed.get(outcome, 0.0))
    for route, per_le in new.buckets.items():
        before = base.buckets.get(route, {})
        delta.buckets[route] = {le: max(0.0, c - before.get(le, 0.0)) for le, c in per_le.items()}
    return delta


def combine(deltas: Iterable[Delta]) -> Delta:
    """Deltas of several processes (a service's replicas) added up."""
    total = Delta()
    for d in deltas:
        total.add(d)
    return total
