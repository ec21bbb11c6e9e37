"""The edge's route table (stackwright.deploy.routes) against the Ingress rendered from it.

Every system and fixture: each probe's outcome from the table (what the local gateway does) equals the
outcome of the rendered Ingress evaluated as ALB listener rules (tests/ingress_eval.py). The running-gateway
version of this check is systems/voting/tests/test_edge_parity.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stackwright.deploy.environments import default_environment
from stackwright.deploy.routes import (
    ALB_LIMITS,
    EdgeTable,
    edge_table,
    production_only,
    table_from_dict,
    table_to_dict,
)
from stackwright.render.k8s import render_k8s
from stackwright.spec import SpecError, System, load_system
from tests.edge_probes import probe_set
from tests.fixtures.load import edited, fixture
from tests.ingress_eval import alb_rules, evaluate

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = {name: REPO / f"systems/{name}/system.yaml" for name in ("voting", "fastapi-app", "speech")}


def _ingress(system: System) -> dict[str, Any] | None:
    text = render_k8s(system).get("k8s/base/ingress.yaml")
    return yaml.safe_load(text) if text else None


def _label(table: EdgeTable, method: str, path: str) -> str:
    return table.match(method, path).label


def _assert_parity(system: System) -> int:
    """The local table (hosts ``<label>.localhost``) and the production Ingress (``<label>.<domain>``) give
    every probe the same outcome."""
    ingress = _ingress(system)
    table = edge_table(system, alb_only=True)
    if ingress is None:
        assert not [r for r in table.rules if r.kind == "forward"]
        return 0
    rules = alb_rules(ingress)
    prod = default_environment(system)
    outcomes = [(p, table.match(p.method, p.path, p.host_name(system, None)).label,
                 evaluate(rules, p.method, p.path, p.host_name(system, prod) or "origin.example.com"))
                for p in probe_set(system)]
    mismatches = [f"{p.method} {p.host} {p.path}: table {mine}, ALB {alb}" for p, mine, alb in outcomes
                  if mine != alb]
    assert not mismatches, "\n".join(mismatches)
    return len(probe_set(system))


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_systems_table_and_rendered_ingress_agree(name: str) -> None:
    system = load_system(SYSTEMS[name])
    _assert_parity(system)
    if name == "fastapi-app":  # behind its own NLB: TCP in production, no path rules there
        assert edge_table(system).passthrough == ("api",) and _ingress(system) is None


@pytest.mark.parametrize("name", ["fanout", "files", "gpu", "streaming", "tenants"])
def test_fixtures_table_and_rendered_ingress_agree(name: str) -> None:
    _assert_parity(fixture(name))


def test_voting_outcomes() -> None:
    table = edge_table(load_system(SYSTEMS["voting"]))
    assert [_label(table, "GET", p) for p in ("/metrics", "/readyz", "/docs", "/docs/x", "/redoc", "/openapi.json")] \
        == ["404"] * 6
    assert _label(table, "GET", "/healthz") == "200"
    assert _label(table, "GET", "/polls/1/results") == "-> results"
    assert _label(table, "HEAD", "/polls/1/results") == "-> results"
    assert _label(table, "POST", "/polls/1/votes") == "-> vote"
    assert _label(table, "GET", "/polls/1/votes") == "-> results"  # /polls/{id} spans segments, as ALB's *
    outcome = table.match("DELETE", "/polls/1")
    assert (outcome.status, outcome.allow) == (405, ("GET", "HEAD", "POST"))
    assert _label(table, "GET", "/%6detrics") == "-> web"  # the path as sent: the service refuses it
    assert table.local_only == ("/auth/dev/", "/auth/.well-known/")
    assert any("5 minutes" in n for n in production_only(load_system(SYSTEMS["voting"])))


def test_a_route_naming_an_internal_path_publishes_it(tmp_path: Path) -> None:
    def publish(spec: dict[str, Any]) -> None:
        spec["services"]["gateway"]["routes"] += [{"path": "/docs", "methods": ["GET"]},
                                                  {"path": "/healthz", "methods": ["GET"]}]

    system = load_system(edited("streaming", tmp_path, publish))
    table = edge_table(system)
    assert _label(table, "GET", "/docs") == _label(table, "GET", "/docs/oauth2-redirect") == "-> gateway"
    assert _label(table, "GET", "/healthz") == "-> gateway"  # the spec's own health route, not the edge's
    assert _label(table, "GET", "/metrics") == "404"
    _assert_parity(system)


def test_the_table_survives_the_gateway_config() -> None:
    table = edge_table(load_system(SYSTEMS["voting"]))
    again = table_from_dict(table_to_dict(table))
    assert [(r.pattern, r.kind, r.action, r.methods, r.status) for r in again.rules] == \
        [(r.pattern, r.kind, r.action, r.methods, r.status) for r in table.rules]
    for probe in probe_set(load_system(SYSTEMS["voting"])):
        assert _label(again, probe.method, probe.path) == _label(table, probe.method, probe.path), probe
    speech = load_system(SYSTEMS["speech"])
    table = edge_table(speech)
    again = table_from_dict(table_to_dict(table))
    assert {r.host for r in again.rules} == {None, "api.localhost", "backend.localhost", "platform.localhost"}
    for probe in probe_set(speech):
        host = probe.host_name(speech, None)
        assert again.match(probe.method, probe.path, host).label == table.match(probe.method, probe.path, host).label


def test_alb_limits_are_the_documented_ones() -> None:
    # AWS, "Quotas for your Application Load Balancers", HTTP headers; beyond them the ALB answers 400.
    assert (ALB_LIMITS.request_line, ALB_LIMITS.single_header, ALB_LIMITS.total_headers, ALB_LIMITS.status) == \
        (16384, 16384, 65536, 400)


def test_route_hosts_are_labels_with_one_owner_per_host(tmp_path: Path) -> None:
    def on_hosts(spec: dict[str, Any]) -> None:
        spec["services"]["gateway"]["routes"] = [{"path": "/stream", "host": "api"},
                                                 {"path": "/stream", "host": "edge.eu"}]

    system = load_system(edited("streaming", tmp_path / "ok", on_hosts))
    table = edge_table(system, "prod")
    assert {r.host for r in table.rules if r.kind == "forward"} == {
        f"api.{system.edge.domain}", f"edge.eu.{system.edge.domain}"}
    assert table.match("GET", "/stream", f"API.{system.edge.domain}:443").service == "gateway"
    assert table.match("GET", "/stream", system.edge.domain).status == 404  # the apex is another name
    assert table.match("GET", "/stream", "api.localhost").status == 404  # production names only
    assert edge_table(system).match("GET", "/stream", "api.localhost:8080").service == "gateway"
    _assert_parity(system)

    for bad in ("API", "api.example.com.", "-api", "api_1", ""):
        def bad_host(spec: dict[str, Any], bad: str = bad) -> None:
            spec["services"]["gateway"]["routes"][0]["host"] = bad

        with pytest.raises(SpecError, match="route host must be DNS labels"):
            load_system(edited("streaming", tmp_path / f"bad{len(bad)}{bad[:1]}", bad_host))

    def twice(spec: dict[str, Any]) -> None:
        spec["services"]["gateway"]["routes"] = [{"path": "/stream", "host": "api"}, {"path": "/stream", "host": "api"}]

    with pytest.raises(SpecError, match="claimed by both"):
        load_system(edited("streaming", tmp_path / "twice", twice))
