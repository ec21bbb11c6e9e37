"""Per-tenant databases (``resources.<pg>.tenants``): validation with file:line, the tenant pool settings in
the environment, and the plan's connection check counting every tenant pool a process may hold open."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.spec import SpecError, load_system
from tests.fixtures.load import edited, fixture, line_of


def test_defaults_are_seed_001s_pool() -> None:
    from stackwright.resources.postgres import Tenants

    assert (Tenants(max=3).pool.min, Tenants(max=3).pool.max) == (2, 20)


def test_tenants_need_per_tenant(tmp_path: Path) -> None:
    path = edited("tenants", tmp_path, lambda s: s["resources"]["db"].update(per_tenant=False))
    with pytest.raises(SpecError, match="set per_tenant: true") as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, 'tenants:')}" in str(info.value)


def test_tenant_migrations_folder_must_exist(tmp_path: Path) -> None:
    path = edited("tenants", tmp_path, lambda s: s["resources"]["db"]["tenants"].update(migrations="nowhere"))
    with pytest.raises(SpecError, match="tenant migrations folder nowhere does not exist") as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, 'migrations: nowhere')}" in str(info.value)


def test_database_migrations_folder_must_exist(tmp_path: Path) -> None:
    # The postgres kind's own check (the spec loader no longer knows about migrations).
    path = edited("tenants", tmp_path, lambda s: s["resources"]["db"].update(migrations="missing-sql"))
    with pytest.raises(SpecError, match="resource 'db': migrations folder missing-sql does not exist") as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, 'migrations: missing-sql')}" in str(info.value)


def test_a_budget_must_hold_one_tenant_pool(tmp_path: Path) -> None:
    path = edited("tenants", tmp_path, lambda s: s["resources"]["db"]["tenants"].update(connection_budget=4))
    with pytest.raises(SpecError, match=r"system\.yaml:\d+: .*connection_budget \(4\) cannot hold one tenant's pool"):
        load_system(path)


def test_tenant_pool_settings_reach_the_service() -> None:
    objs = build_manifests(fixture("tenants"), "us-east-1", "prod")
    config = next(o["data"] for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "api-config")
    assert (config["DB_POOL_MIN"], config["DB_POOL_MAX"]) == ("1", "5")  # tenants.pool, read per tenant pool
    assert (config["DB_TENANTS_MAX"], config["DB_CONNECTION_BUDGET"]) == ("200", "40")


def _connections(path: Path):
    plan = build_plan(load_system(path))
    row = next(x for x in plan.capacity.limits if x.component == "PostgreSQL db primary connections")
    high = [f for f in plan.findings if f.severity == "high" and "PostgreSQL db" in f.message]
    return row, high


def test_budget_bounds_the_connections_per_process() -> None:
    plan = build_plan(fixture("tenants"))
    row = next(x for x in plan.capacity.limits if x.component == "PostgreSQL db primary connections")
    # api: 6 replicas + 25% surge = 8 pods x min(200 tenants x 5, budget 40)
    assert (row.limit, row.demand) == (1802, 8 * 40)
    assert "min(200 tenants x 5, budget 40)" in row.basis
    assert not [f for f in plan.findings if f.severity == "high"]


def test_unbounded_tenants_over_max_connections_is_high(tmp_path: Path) -> None:
    path = edited("tenants", tmp_path, lambda s: s["resources"]["db"]["tenants"].pop("connection_budget"))
    row, high = _connections(path)
    assert row.demand == 8 * 200 * 5  # every tenant's pool in every pod
    (finding,) = high
    assert "no connection budget" in finding.message and "8,000 connections" in finding.message
    assert finding.where == "resources.db.tenants.connection_budget"


def test_unbounded_but_small_is_fine(tmp_path: Path) -> None:
    def few(spec: dict) -> None:
        spec["resources"]["db"]["tenants"].pop("connection_budget")
        spec["resources"]["db"]["tenants"]["max"] = 10

    row, high = _connections(edited("tenants", tmp_path, few))
    assert row.demand == 8 * 10 * 5 and not high


def test_schema_documents_tenants() -> None:
    from stackwright.spec.schema import json_schema

    props = json_schema()["$defs"]["Tenants"]["properties"]
    assert "least recently used" in props["connection_budget"]["description"]


def _with_onboarding(spec: dict, admin_only: list[str]) -> None:
    """An onboarding service (4 replicas) that only creates tenant databases through the admin URL."""
    spec["services"]["onboarding"] = {"replicas": {"min": 1, "max": 4}, "uses": ["db"]}
    spec["resources"]["db"]["tenants"]["admin_only"] = admin_only


def test_admin_only_services_count_one_connection_per_process(tmp_path: Path) -> None:
    counted, _ = _connections(edited("tenants", tmp_path / "a", lambda s: _with_onboarding(s, [])))
    assert counted.demand == 8 * 40 + 5 * 40  # onboarding's 4 + 1 surge pods counted as tenant-pool openers
    row, _ = _connections(edited("tenants", tmp_path / "b", lambda s: _with_onboarding(s, ["onboarding"])))
    assert row.demand == 8 * 40 + 5 * 1
    assert "onboarding 5 pods x 1 (admin only)" in row.basis


def test_admin_only_names_a_service_using_the_database(tmp_path: Path) -> None:
    path = edited("tenants", tmp_path, lambda s: s["resources"]["db"]["tenants"].update(admin_only=["nobody"]))
    with pytest.raises(SpecError, match=r"tenants\.admin_only names 'nobody', which is not a service using it"):
        load_system(path)
