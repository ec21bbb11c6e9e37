"""A real Prometheus started by LocalPrometheus scrapes a /metrics endpoint and service_metrics reads it back."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from stackwright.cli.monitoring_cmds import register
from stackwright.monitoring import LocalPrometheus, PrometheusError, service_metrics
from stackwright.spec import System, load_system

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus is not installed (apt-get install prometheus)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _FakeService(BaseHTTPRequestHandler):
    """Serves starlette-exporter-shaped metrics whose counters grow 10 requests (1 failing) per scrape."""

    scrapes = 0

    def do_GET(self) -> None:
        type(self).scrapes += 1
        n = type(self).scrapes * 10
        labels = 'app_name="api",method="GET",path="/items"'
        body = "\n".join([
            "# TYPE starlette_requests_total counter",
            f'starlette_requests_total{{{labels},status_code="200"}} {n * 0.9}',
            f'starlette_requests_total{{{labels},status_code="500"}} {n * 0.1}',
            "# TYPE starlette_request_duration_seconds histogram",
            f'starlette_request_duration_seconds_bucket{{{labels},status_code="200",le="0.05"}} 0',
            f'starlette_request_duration_seconds_bucket{{{labels},status_code="200",le="0.1"}} {n}',
            f'starlette_request_duration_seconds_bucket{{{labels},status_code="200",le="+Inf"}} {n}',
            f'starlette_request_duration_seconds_sum{{{labels},status_code="200"}} {n * 0.07}',
            f'starlette_request_duration_seconds_count{{{labels},status_code="200"}} {n}',
            "# TYPE starlette_requests_in_progress gauge",
            'starlette_requests_in_progress{app_name="api",method="GET"} 3',
            "",
        ]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def system() -> System:
    return load_system("fastapi-app", root=REPO)


def test_local_prometheus_scrapes_and_service_metrics_reads(system: System, fake_service: str,
                                                            tmp_path: Path) -> None:
    prom = LocalPrometheus(system, {"api": [fake_service]}, tmp_path / "prom", port=_free_port(),
                           scrape_interval="1s")
    with prom:
        rows: list[dict] = []
        recorded: list[dict] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = service_metrics(prom.url, system, window="10s")
            # the generated recording rules are loaded and evaluated too
            recorded = prom.query("service:http_requests_in_progress:sum")
            if rows[0]["request_rate"] and rows[0]["p95_ms"] is not None and recorded:
                break
            time.sleep(0.5)
        assert prom.query('up{job="api", service="api", system="fastapi-app"}')[0]["value"][1] == "1"
        app = typer.Typer()
        register(app)
        result = CliRunner().invoke(app, ["metrics", str(REPO / "systems/fastapi-app"),
                                          "--prometheus-url", prom.url, "--window", "10s"])
    assert prom.process is None
    row = rows[0]
    assert row["service"] == "api" and row["targets_up"] == 1 and row["targets"] == 1
    assert row["request_rate"] > 0
    assert row["error_rate"] == pytest.approx(0.1, abs=0.02)
    assert 50 <= row["p95_ms"] <= 100
    assert row["in_flight"] == 3
    assert recorded[0]["metric"]["service"] == "api" and recorded[0]["value"][1] == "3"
    assert result.exit_code == 0, result.output
    assert "api" in result.output and "1/1" in result.output


def test_service_metrics_without_prometheus_is_a_clear_error(system: System) -> None:
    with pytest.raises(PrometheusError, match="cannot reach Prometheus"):
        service_metrics(f"http://127.0.0.1:{_free_port()}", system)


def test_bad_config_is_reported(system: System, tmp_path: Path) -> None:
    prom = LocalPrometheus(system, {"api": ["127.0.0.1:1"]}, tmp_path, port=_free_port(), scrape_interval="nope")
    with pytest.raises(PrometheusError, match="exited"):
        prom.start(timeout=15)
    assert prom.process is None
