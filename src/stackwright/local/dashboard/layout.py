"""The system's topology, from its spec, laid out in layers: a deterministic picture for the dashboard.

Rows from top to bottom: the edge gateway (when any service has routes), then services by how deep they
sit in the ``calls:`` graph (a service sits one row below the deepest service that calls it), then the
resources they use. Within a row, nodes are ordered by the mean position of the nodes above that point at
them (the barycentre heuristic: fewer crossing edges), ties broken by name, so the same spec always gives
the same picture. Nothing here knows any particular system.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...spec import System

NODE_W = 184
NODE_H = 64
GAP_X = 26
GAP_Y = 70
MARGIN = 20
# Room above the first row for the regions strip.
HEADER_H = 34

EDGE_ID = "edge"


@dataclass(frozen=True)
class Node:
    """One box: a service, a resource or the edge gateway."""

    id: str
    label: str
    group: str  # "edge" | "service" | "resource"
    kind: str  # the service's kind (api/worker/web), the resource's kind (postgres, queue, ...), or "gateway"
    layer: int
    x: float = 0.0
    y: float = 0.0
    w: float = NODE_W
    h: float = NODE_H
    detail: str = ""


@dataclass(frozen=True)
class Link:
    """An arrow: the edge routes to a service, a service calls another or uses a resource."""

    source: str
    target: str
    kind: str  # "routes" | "calls" | "uses"


@dataclass
class Topology:
    """Nodes with positions, links, regions and the size of the drawing."""

    nodes: list[Node]
    links: list[Link]
    regions: list[dict[str, str]] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [asdict(n) for n in self.nodes], "links": [asdict(e) for e in self.links],
                "regions": self.regions, "width": self.width, "height": self.height}


def service_node_id(name: str) -> str:
    return f"svc-{name}"


def resource_node_id(name: str) -> str:
    return f"res-{name}"


def _service_depths(system: System) -> dict[str, int]:
    """Row of each service: 0 unless called, else one below its deepest caller (``calls`` is acyclic)."""
    callers: dict[str, list[str]] = {name: [] for name in system.services}
    for name, svc in system.services.items():
        for callee in svc.calls:
            callers[callee].append(name)
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((visit(c) for c in callers[name]), default=-1)
        return depth[name]

    for name in system.services:
        visit(name)
    return depth


def build(system: System) -> Topology:
    """Nodes and links of ``system`` with their rows (unplaced; see :func:`layout`)."""
    nodes: list[Node] = []
    links: list[Link] = []
    has_edge = any(svc.routes for svc in system.services.values())
    offset = 1 if has_edge else 0
    if has_edge:
        nodes.append(Node(EDGE_ID, "gateway", "edge", "gateway", 0, detail="edge: routes, auth, rate limits"))
    depths = _service_depths(system)
    for name, svc in system.services.items():
        nodes.append(Node(service_node_id(name), name, "service", svc.kind, depths[name] + offset,
                          detail=svc.description))
        if svc.routes:
            links.append(Link(EDGE_ID, service_node_id(name), "routes"))
        links.extend(Link(service_node_id(name), service_node_id(c), "calls") for c in svc.calls)
        links.extend(Link(service_node_id(name), resource_node_id(r), "uses") for r in svc.uses)
    resource_row = offset + 1 + max(depths.values(), default=0)
    for name, res in system.resources.items():
        nodes.append(Node(resource_node_id(name), name, "resource", res.kind, resource_row,
                          detail=getattr(res, "description", "") or ""))
    regions = [{"name": r.name, "role": r.role} for r in system.regions]
    return Topology(nodes, links, regions)


def layout(system: System) -> Topology:
    """The topology of ``system`` with every node placed (see the module docstring for the rules)."""
    topo = build(system)
    rows: dict[int, list[Node]] = {}
    for node in topo.nodes:
        rows.setdefault(node.layer, []).append(node)
    incoming: dict[str, list[str]] = {}
    for link in topo.links:
        incoming.setdefault(link.target, []).append(link.source)
    widest = max(len(row) for row in rows.values())
    width = 2 * MARGIN + widest * NODE_W + (widest - 1) * GAP_X
    slot: dict[str, float] = {}  # each placed node's index within its row, centred on the widest row
    placed: list[Node] = []
    for layer in sorted(rows):
        row = rows[layer]

        def barycentre(node: Node) -> float:
            above = [slot[s] for s in incoming.get(node.id, []) if s in slot]
            return sum(above) / len(above) if above else float("inf")

        # Nodes nothing above points at go last, in name order; then name breaks ties: deterministic.
        row.sort(key=lambda n: (barycentre(n), n.label))
        shift = (widest - len(row)) / 2
        y = MARGIN + HEADER_H + layer * (NODE_H + GAP_Y)
        for i, node in enumerate(row):
            slot[node.id] = shift + i
            x = MARGIN + (shift + i) * (NODE_W + GAP_X)
            placed.append(Node(**{**asdict(node), "x": x, "y": y}))
    height = MARGIN + HEADER_H + len(rows) * NODE_H + (len(rows) - 1) * GAP_Y + MARGIN
    order = {n.id: i for i, n in enumerate(topo.nodes)}
    placed.sort(key=lambda n: order[n.id])
    return Topology(placed, topo.links, topo.regions, width=width, height=height)
