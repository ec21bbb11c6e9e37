"""Issue 20: the platform's endpoints (metrics, readiness, API docs) are never behind the public NLB.

fastapi-app is exposed through its own NLB, which passes TCP straight through, so no path rule can hide
anything there: the endpoints must be on a port the NLB does not expose. Checked in the render (the NLB
Service's target port is not the port Prometheus scrapes /metrics from, nor the probes' port) and on the
running system (the application port answers 404 for them, the platform port 200).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from stackwright.render import build_manifests
from stackwright.render.k8s.ingress import public_service_name
from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"
PLATFORM = ("/metrics", "/readyz", "/healthz", "/docs", "/redoc", "/openapi.json")


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    system = load_system(SPEC)
    return build_manifests(system, system.primary_region.name, "prod")


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_nlb_exposes_no_port_serving_metrics(manifests: list[dict[str, Any]]) -> None:
    nlb = _one(manifests, "Service", public_service_name("api"))
    assert nlb["spec"]["type"] == "LoadBalancer"
    (container,) = _one(manifests, "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    exposed = {ports.get(p["targetPort"], p["targetPort"]) for p in nlb["spec"]["ports"]}
    assert exposed == {8000}  # the application port only

    # What serves /metrics is the port Prometheus scrapes (through the ClusterIP Service's named port).
    (monitor,) = [o for o in manifests if o["kind"] == "ServiceMonitor"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    cluster = {p["name"]: p["targetPort"] for p in _one(manifests, "Service", "api")["spec"]["ports"]}
    metrics_port = ports[cluster[endpoint["port"]]]
    assert metrics_port == 9464 and metrics_port not in exposed
    # The NLB's own health check: the seed's /health is the app's route, on the traffic port.
    annotations = nlb["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] == "/health"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-port"] == "traffic-port"
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTP"}
    # The pods say where the platform port is, and publish none of its paths (no route names one).
    config = _one(manifests, "ConfigMap", "api-config")["data"]
    assert config["PLATFORM_PORT"] == "9464" and "PUBLISHED_PLATFORM_PATHS" not in config


def test_locally_the_app_port_hides_the_platform_endpoints(running: dict[str, Any]) -> None:
    (replica,) = running["services"]["api"]
    app, platform = replica["url"], replica["platform_url"]
    assert app != platform
    with httpx.Client(timeout=10) as client:
        for path in PLATFORM:
            hidden = client.get(app + path)
            assert (path, hidden.status_code) == (path, 404)
            assert hidden.headers["content-type"] == "application/problem+json"
            assert client.get(platform + path).status_code == 200, path
        assert "starlette_requests_total" in client.get(platform + "/metrics").text
        # An encoded spelling is decoded by the server before routing: still not served on the app port.
        assert client.get(app + "/%6detrics").status_code == 404
        # The seed's contract: /health and the API on the application port, not on the platform port.
        assert client.get(app + "/health").json()["status"] == "ok"
        assert client.get(app + "/items").status_code == 200
        assert client.get(platform + "/health").status_code == 404
        assert client.get(platform + "/items").status_code == 404
        # Through the local edge, as through the NLB: the routes, never the platform's endpoints.
        edge = running["gateway"]
        assert client.get(edge + "/health").status_code == 200
        assert [client.get(edge + p).status_code for p in ("/metrics", "/readyz", "/docs", "/openapi.json")] \
            == [404] * 4
