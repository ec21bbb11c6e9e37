"""system.yaml carries the production shape of seed 003."""

from __future__ import annotations

from pathlib import Path

from stackwright.monitoring import alert_rules, grafana_dashboard
from stackwright.spec import PostgresResource, load_system

SYSTEM = load_system(Path(__file__).resolve().parents[1] / "system.yaml")


def test_service_shape_matches_the_seed() -> None:
    api = SYSTEM.services["api"]
    assert (api.port, api.expose, api.service_port) == (8000, "load-balancer", 80)
    assert (api.replicas.min, api.replicas.max) == (2, 10)
    assert api.autoscale is not None and api.autoscale.cpu_percent == 70
    r = api.resources
    assert (r.cpu, r.memory, r.cpu_limit, r.memory_limit) == ("250m", "256Mi", "500m", "512Mi")
    live, ready = api.probes.liveness, api.probes.readiness
    assert (live.path, live.initial_delay_s, live.period_s) == ("/health", 30, 10)
    assert (ready.path, ready.initial_delay_s, ready.period_s) == ("/health", 5, 5)
    assert api.uses == ["db"]


def test_platform_matches_the_seed() -> None:
    assert [(r.name, r.role, r.vpc_cidr) for r in SYSTEM.regions] == [("ap-southeast-1", "primary", "10.0.0.0/16")]
    assert (SYSTEM.network.azs, SYSTEM.network.layout, SYSTEM.network.nat) == (2, "public-only", "none")
    (pool,) = SYSTEM.cluster.node_pools
    assert (pool.instance_types, pool.min, pool.desired, pool.max) == (["t3.medium"], 1, 2, 3)
    db = SYSTEM.resources["db"]
    assert isinstance(db, PostgresResource) and db.engine == "external" and db.migrations == "migrations"
    assert SYSTEM.monitoring.prometheus and SYSTEM.monitoring.grafana


def test_monitoring_is_generated_for_the_one_service() -> None:
    services = {r["labels"]["service"] for g in alert_rules(SYSTEM)["groups"] for r in g["rules"]}
    assert services == {"api"}
    assert [p["title"] for p in grafana_dashboard(SYSTEM)["panels"] if p["type"] == "timeseries"] == [
        "Request rate", "Response time (p95)", "Error rate", "Active requests"]
