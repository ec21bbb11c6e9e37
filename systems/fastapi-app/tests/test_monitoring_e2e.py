"""fastapi-app with `up --monitoring`: real service processes, a real Prometheus scraping them, and the
series read back, errors included."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from stackwright.monitoring.prometheus import query, service_metrics
from stackwright.spec import load_system

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary (apt: prometheus)"),
]
SPEC = Path(__file__).resolve().parents[1] / "system.yaml"


# `running` (conftest.py): the system brought up once per session, with --monitoring here.


def _eventually(fn: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"not seen in time (last: {last})")


def _traffic(base: str, start: int, count: int) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        for i in range(start, start + count):
            assert client.post("/items", json={"name": f"mon-{i}", "price": "1.50"}).status_code == 201
            assert client.get("/items", params={"limit": 5}).status_code == 200
            assert client.get(f"/items/{uuid.uuid4()}").status_code == 404
            assert client.post("/items", json={"price": "x"}).status_code == 422


def test_traffic_and_errors_reach_prometheus(running: dict[str, Any]) -> None:
    base, prom = running["gateway"], running["prometheus"]
    assert prom, "up --monitoring recorded no Prometheus URL"
    _traffic(base, 0, 20)
    # Rates need the counters to grow between two scrapes, so send a second wave once the first is seen.
    _eventually(lambda: query(prom, 'starlette_requests_total{app_name="api",status_code="201"}'))
    _traffic(base, 20, 20)
    # Exactly what was sent, once the next scrape has happened.
    assert _eventually(lambda: query(prom, 'sum(starlette_requests_total{app_name="api",method="POST",'
                                           'path="/items",status_code="201"}) == 40'))
    assert _eventually(lambda: query(prom, 'sum(starlette_requests_total{app_name="api",method="GET",'
                                           'path="/items/{item_id}",status_code="404"}) == 40'))
    assert _eventually(lambda: query(prom, 'sum(starlette_requests_total{app_name="api",status_code="422"}) == 40'))
    assert _eventually(lambda: query(prom, 'up{job="api", system="fastapi-app"} == 1'))
    assert _eventually(lambda: query(prom, 'starlette_request_duration_seconds_count{app_name="api"}'))
    # The generated recording rules run on the real series too.
    assert _eventually(lambda: query(prom, 'service:http_requests:rate5m{service="api"} > 0'))
    rows = service_metrics(prom, load_system(SPEC), window="1m")
    api = next(r for r in rows if r["service"] == "api")
    assert api["targets_up"] == 1 and api["request_rate"] is not None and api["request_rate"] > 0
    assert api["error_rate"] == 0  # 4xx are the client's errors, not the service's
