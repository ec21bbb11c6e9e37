"""The dashboard's topology: every service and resource of a spec drawn, in deterministic layered rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stackwright.local.dashboard import layout, svg
from stackwright.spec import System, load_system

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = sorted(p.parent.name for p in (REPO / "systems").glob("*/system.yaml"))


def _with_calls(calls: dict[str, list[str]]) -> System:
    """voting's spec with extra services wired by ``calls`` (a deeper graph than any real system has)."""
    data = yaml.safe_load((REPO / "systems" / "voting" / "system.yaml").read_text())
    for name, callees in calls.items():
        data["services"].setdefault(name, {"uses": []})["calls"] = callees
    return System.model_validate(data)


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_service_and_resource_is_a_node(name: str) -> None:
    system = load_system(REPO / "systems" / name / "system.yaml")
    topo = layout.layout(system)
    ids = {n.id for n in topo.nodes}
    assert {layout.service_node_id(s) for s in system.services} <= ids
    assert {layout.resource_node_id(r) for r in system.resources} <= ids
    for svc_name, svc in system.services.items():
        for res in svc.uses:
            assert layout.Link(layout.service_node_id(svc_name), layout.resource_node_id(res), "uses") in topo.links
    assert [r["name"] for r in topo.regions] == [r.name for r in system.regions]
    drawing = svg.render(topo)
    for node_id in ids:
        assert f'data-node="{node_id}"' in drawing


def test_rows_gateway_then_services_then_resources() -> None:
    topo = layout.layout(load_system(REPO / "systems" / "voting" / "system.yaml"))
    rows = {n.id: n.layer for n in topo.nodes}
    assert rows[layout.EDGE_ID] == 0
    assert {rows[f"svc-{s}"] for s in ("auth", "vote", "results", "worker", "web")} == {1}
    assert {rows[f"res-{r}"] for r in ("db", "cache", "votes", "audit")} == {2}
    # The gateway routes only to services with routes: the worker gets no arrow from the edge.
    targets = {e.target for e in topo.links if e.kind == "routes"}
    assert "svc-worker" not in targets and "svc-vote" in targets


def test_a_called_service_sits_below_its_deepest_caller() -> None:
    system = _with_calls({"vote": ["auth"], "results": ["vote"]})
    rows = {n.id: n.layer for n in layout.layout(system).nodes}
    assert rows["svc-results"] < rows["svc-vote"] < rows["svc-auth"]
    assert all(rows[f"res-{r}"] == max(rows.values()) for r in system.resources)
    assert layout.Link("svc-results", "svc-vote", "calls") in layout.layout(system).links


def test_layout_is_deterministic_and_nodes_do_not_overlap() -> None:
    system = load_system(REPO / "systems" / "voting" / "system.yaml")
    first, second = layout.layout(system), layout.layout(system)
    assert first.to_dict() == second.to_dict()
    assert svg.render(first) == svg.render(second)
    for a in first.nodes:
        assert a.x >= 0 and a.x + a.w <= first.width and a.y + a.h <= first.height
        for b in first.nodes:
            if a.id < b.id and a.layer == b.layer:
                assert a.x + a.w <= b.x or b.x + b.w <= a.x, (a.id, b.id)


def test_labels_are_escaped_in_the_drawing() -> None:
    data = yaml.safe_load((REPO / "systems" / "voting" / "system.yaml").read_text())
    data["services"]["web"]["description"] = '<script>alert("x")</script>'
    drawing = svg.render(layout.layout(System.model_validate(data)))
    assert "<script>" not in drawing and "&lt;script&gt;" in drawing
