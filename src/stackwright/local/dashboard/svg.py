"""Draw a laid-out :class:`~.layout.Topology` as inline SVG.

The drawing is static; the page's script finds nodes by ``data-node`` and fills in health and numbers, so
the picture is complete (and readable) even before the first update arrives or if the script fails.
"""

from __future__ import annotations

from html import escape

from .layout import Link, Node, Topology

_PILL_W = 190


def _link_path(src: Node, dst: Node) -> str:
    """A vertical S-curve from the bottom of ``src`` to the top of ``dst`` (or sideways within a row)."""
    if dst.y > src.y:
        x1, y1 = src.x + src.w / 2, src.y + src.h
        x2, y2 = dst.x + dst.w / 2, dst.y
        mid = (y1 + y2) / 2
        return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
    left, right = (src, dst) if src.x < dst.x else (dst, src)
    y = src.y + src.h / 2
    return f"M{left.x + left.w:.1f},{y:.1f} L{right.x:.1f},{y:.1f}"


def _node(node: Node) -> str:
    cx = node.x + node.w / 2
    about = f": {node.detail}" if node.detail else ""
    title = f"<title>{escape(f'{node.label} ({node.kind}){about}')}</title>"
    return (
        f'<g class="node group-{node.group} kind-{escape(node.kind)}" data-node="{escape(node.id)}" '
        f'data-health="unknown" transform="translate(0,0)">{title}'
        f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w:.1f}" height="{node.h:.1f}" rx="8"/>'
        f'<circle class="dot" cx="{node.x + 14:.1f}" cy="{node.y + 16:.1f}" r="6"/>'
        f'<text class="label" x="{node.x + 26:.1f}" y="{node.y + 21:.1f}">{escape(node.label)}</text>'
        f'<text class="kind" x="{node.x + node.w - 8:.1f}" y="{node.y + 21:.1f}" text-anchor="end">'
        f'{escape(node.kind)}</text>'
        f'<text class="line1" x="{cx:.1f}" y="{node.y + 40:.1f}" text-anchor="middle"></text>'
        f'<text class="line2" x="{cx:.1f}" y="{node.y + 56:.1f}" text-anchor="middle"></text>'
        "</g>"
    )


def _link(link: Link, nodes: dict[str, Node]) -> str:
    src, dst = nodes[link.source], nodes[link.target]
    return (f'<path class="link link-{link.kind}" data-source="{escape(link.source)}" '
            f'data-target="{escape(link.target)}" d="{_link_path(src, dst)}" marker-end="url(#arrow)"/>')


def _regions(topo: Topology) -> str:
    parts = []
    x = 20.0
    for region in topo.regions:
        label = f"{region['name']} · {region['role']}"
        parts.append(f'<g class="region role-{escape(region["role"])}"><rect x="{x:.1f}" y="12" width="{_PILL_W}" '
                     f'height="22" rx="11"/><text x="{x + _PILL_W / 2:.1f}" y="27" text-anchor="middle">'
                     f"{escape(label)}</text></g>")
        x += _PILL_W + 8
    return "".join(parts)


def render(topo: Topology) -> str:
    """The whole topology as one ``<svg>`` element."""
    nodes = {n.id: n for n in topo.nodes}
    width = max(topo.width, 20 + len(topo.regions) * (_PILL_W + 8))
    return (
        f'<svg id="topology" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {topo.height:.0f}" '
        f'width="{width:.0f}" height="{topo.height:.0f}" role="img" aria-label="system topology">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        f'<g class="regions">{_regions(topo)}</g>'
        f'<g class="links">{"".join(_link(e, nodes) for e in topo.links)}</g>'
        f'<g class="nodes">{"".join(_node(n) for n in topo.nodes)}</g>'
        "</svg>"
    )
