"""The dashboard's reading of /metrics: real Prometheus text (prometheus_client's own exposition) into
per-route rates, p95 and error share, queue gauges, replicas added up and restarts handled."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stackwright.local.dashboard import metrics
from stackwright.runtime.metrics import BUCKETS


class FakeService:
    """The runtime's metric families (same names, labels and buckets) in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["app_name", "method", "path", "status_code"]
        self.requests = Counter("starlette_requests", "HTTP requests", labels, registry=self.registry)
        self.duration = Histogram("starlette_request_duration_seconds", "HTTP request duration", labels,
                                  buckets=BUCKETS, registry=self.registry)
        self.depth = Gauge("stackwright_queue_depth", "depth", ["queue"], registry=self.registry)
        self.dlq = Gauge("stackwright_queue_dlq_depth", "dlq", ["queue"], registry=self.registry)
        self.lag = Gauge("stackwright_worker_lag_seconds", "lag", ["queue"], registry=self.registry)
        self.processed = Counter("stackwright_messages_processed", "handled", ["queue", "outcome"],
                                 registry=self.registry)

    def serve(self, method: str, path: str, status: int, seconds: float, n: int = 1) -> None:
        for _ in range(n):
            self.requests.labels("api", method, path, str(status)).inc()
            self.duration.labels("api", method, path, str(status)).observe(seconds)

    def read(self, at: float) -> metrics.Reading:
        return metrics.parse(generate_latest(self.registry).decode(), at)


def test_parse_sums_status_codes_per_route_and_counts_5xx() -> None:
    svc = FakeService()
    svc.serve("GET", "/items/{id}", 200, 0.004, n=8)
    svc.serve("GET", "/items/{id}", 404, 0.002, n=1)
    svc.serve("GET", "/items/{id}", 503, 0.3, n=1)
    reading = svc.read(100.0)
    route = ("GET", "/items/{id}")
    assert reading.requests[route] == 10
    assert reading.errors[route] == 1
    assert reading.buckets[route][float("inf")] == 10
    assert reading.buckets[route][0.005] == 9


def test_quantile_interpolates_like_histogram_quantile() -> None:
    # 100 requests: 90 within 10 ms, 10 between 100 and 200 ms.
    buckets = {0.01: 90.0, 0.1: 90.0, 0.2: 100.0, float("inf"): 100.0}
    assert metrics.quantile(buckets, 0.5) == pytest.approx(0.01 * 50 / 90)
    assert metrics.quantile(buckets, 0.95) == pytest.approx(0.15)
    assert metrics.quantile({0.1: 0.0, float("inf"): 0.0}, 0.95) is None
    # Beyond the last finite bucket only its bound is known.
    assert metrics.quantile({0.1: 1.0, float("inf"): 10.0}, 0.95) == pytest.approx(0.1)


def test_window_gives_rate_p95_and_error_share_of_what_happened_in_between() -> None:
    svc = FakeService()
    svc.serve("POST", "/items", 201, 0.5, n=50)  # before the window: slow, must not count
    old = svc.read(100.0)
    svc.serve("POST", "/items", 201, 0.004, n=95)
    svc.serve("POST", "/items", 500, 0.004, n=5)
    route = metrics.window(old, svc.read(110.0)).routes()[0]
    assert (route.method, route.path) == ("POST", "/items")
    assert route.rps == pytest.approx(10.0)
    assert route.error_share == pytest.approx(0.05)
    assert route.p95_ms is not None and route.p95_ms <= 5.0
    assert route.total == 150


def test_a_restarted_process_counts_from_zero() -> None:
    before, after = FakeService(), FakeService()
    before.serve("GET", "/", 200, 0.01, n=500)
    after.serve("GET", "/", 200, 0.01, n=3)  # the new process: counters went down
    delta = metrics.window(before.read(100.0), after.read(101.0))
    route = delta.routes()[0]
    assert route.total == 3 and route.rps == 0.0  # no rate until a second reading of the new process


def test_replicas_add_up_and_idle_routes_keep_their_totals() -> None:
    a, b = FakeService(), FakeService()
    a.serve("GET", "/polls", 200, 0.01, n=10)
    b.serve("GET", "/polls", 200, 0.01, n=10)
    b.serve("POST", "/polls", 201, 0.01, n=2)
    old_a, old_b = a.read(0.0), b.read(0.0)
    a.serve("GET", "/polls", 200, 0.01, n=20)
    b.serve("GET", "/polls", 200, 0.01, n=30)
    total = metrics.combine([metrics.window(old_a, a.read(5.0)), metrics.window(old_b, b.read(5.0))])
    by_route = {(r.method, r.path): r for r in total.routes()}
    assert by_route["GET", "/polls"].rps == pytest.approx(10.0)
    assert by_route["GET", "/polls"].total == 70
    assert by_route["POST", "/polls"].rps == 0.0 and by_route["POST", "/polls"].total == 2
    assert total.overall().rps == pytest.approx(10.0)


def test_queue_gauges_and_worker_throughput() -> None:
    svc = FakeService()
    svc.depth.labels("shop-orders").set(42)
    svc.dlq.labels("shop-orders").set(3)
    svc.lag.labels("shop-orders").set(1.5)
    svc.processed.labels("shop-orders", "ok").inc(10)
    old = svc.read(0.0)
    assert old.queues == {"shop-orders": {"depth": 42.0, "dlq": 3.0, "lag_s": 1.5}}
    svc.processed.labels("shop-orders", "ok").inc(18)
    svc.processed.labels("shop-orders", "failed").inc(2)
    assert metrics.window(old, svc.read(2.0)).messages_per_s() == pytest.approx(10.0)
    assert metrics.window(None, FakeService().read(0.0)).messages_per_s() is None
