"""Mermaid diagrams drawn from the spec, in the seeds' style: deployment, request sequences, VPC layout.

SVG is rendered only when ``mmdc`` (@mermaid-js/mermaid-cli) is on PATH; otherwise the document keeps the
Mermaid source, which GitHub and most viewers render themselves.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..deploy import scale
from ..deploy.network import INTERFACE_ENDPOINTS, layout
from ..resources import kind_of
from ..spec import System
from ..spec.model import Route
from .capacity import region_shares
from .model import Diagram

STYLES = """    classDef primary fill:#e1f5fe,stroke:#01579b
    classDef secondary fill:#f3e5f5,stroke:#4a148c
    classDef data fill:#e8f5e9,stroke:#1b5e20
    classDef edge fill:#fff3e0,stroke:#e65100
    classDef k8s fill:#326ce5,stroke:#1a3a6e,color:#fff"""


IDP_LABEL = {"auth0": "Auth0", "cognito": "Cognito", "dev": "dev IdP"}


def _id(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))


def _q(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _node(ident: str, label: str, shape: str = "box") -> str:
    if shape == "db":
        return f"{ident}[({_q(label)})]"
    return f"{ident}[{_q(label)}]"


def deployment(system: System, environment: str) -> Diagram:
    """Edge -> regions -> VPC subnets -> EKS node groups -> workloads -> data stores, with replication."""
    lines = ["flowchart TB"]
    edge = system.edge
    primary = system.primary_region.name
    shares = region_shares(system)
    lines += ['    subgraph Internet["Internet"]', '        Users["Clients"]', "    end"]
    lines.append('    subgraph Edge["AWS Edge Services"]')
    hc = f"health check {edge.health_check_interval_s} s x {edge.health_check_failure_threshold}"
    lines.append(f"        Route53[{_q(f'Route 53<br/>{edge.domain}<br/>failover, {hc}')}]")
    if edge.waf:
        lines.append(f"        WAF[{_q(f'AWS WAF<br/>{edge.waf.rate_limit_per_5min} req / 5 min per IP')}]")
    if edge.cdn:
        lines.append(f"        CloudFront[{_q('CloudFront<br/>static assets CDN')}]")
    lines.append("    end")
    if edge.identity and edge.identity.provider != "dev":
        idp = IDP_LABEL[edge.identity.provider]
        lines += [f'    subgraph IdPCloud["{idp} (external)"]',
                  f"        IdP[{_q(f'{idp}<br/>identity provider<br/>OAuth2/OIDC')}]", "    end"]
    lines.append("    Users --> Route53")
    # One edge order everywhere (see edge_hops): Route 53 answers DNS, CloudFront serves static content,
    # WAF inspects what reaches CloudFront or the regional front door, then API Gateway / the ALB.
    if edge.cdn:
        lines.append("    Route53 --> CloudFront")
        if edge.waf:
            lines.append("    CloudFront --> WAF")
    if edge.waf:
        lines.append("    Route53 --> WAF")
    links: list[str] = []
    classes: dict[str, list[str]] = {"data": [], "edge": [], "k8s": [], "primary": [], "secondary": []}
    home = next((p.name for p in system.cluster.node_pools if not p.gpu), system.cluster.node_pools[0].name)
    for region in system.regions:
        r = region.name
        net = layout(system, r)
        role = "Primary" if r == primary else region.role.capitalize()
        lines.append(f"    subgraph {_id('R', r)}[{_q(f'{r.upper()} ({role}, {shares[r]:.0%} of traffic)')}]")
        classes["primary" if r == primary else "secondary"].append(_id("R", r))
        lines.append(f"        subgraph {_id('VPC', r)}[{_q(f'VPC {region.vpc_cidr}')}]")
        private = system.network.layout == "private"
        lines.append(f"            subgraph {_id('PUB', r)}[{_q(f'Public subnets ({len(net.azs)} AZs)')}]")
        front = None
        if edge.api_gateway:
            gw = _id("APIGW", r)
            gw_label = f"API Gateway<br/>{edge.api_gateway.rps_limit / 1000:g}k RPS limit" + (
                "<br/>JWT validation" if edge.identity else "")
            lines.append(f"                {_node(gw, gw_label)}")
            links.append(f"    {'WAF' if edge.waf else 'Route53'} --> {gw}")
            classes["edge"].append(gw)
            front = gw
        alb = None
        if any(s.routes and s.expose == "ingress" for s in system.services.values()):
            alb = _id("ALB", r)
            lines.append(f"                {_node(alb, 'ALB<br/>(AWS LB Controller)<br/>Ingress')}")
            links.append(f"    {front or ('WAF' if edge.waf else 'Route53')} --> {alb}")
            classes["edge"].append(alb)
            if edge.cdn and r == primary and not edge.waf:
                links.append(f"    CloudFront -.->|origin| {alb}")
        lbs = {}
        for name, svc in system.services.items():
            if svc.expose == "load-balancer":
                lbs[name] = _id("LB", r, name)
                lines.append(f"                {_node(lbs[name], f'Load balancer<br/>Service {name}')}")
                links.append(f"    {front or ('WAF' if edge.waf else 'Route53')} --> {lbs[name]}")
                classes["edge"].append(lbs[name])
        if net.nat_azs:
            lines.append(f"                {_node(_id('NAT', r), f'NAT gateway x{len(net.nat_azs)}')}")
        # Public-only: the nodes share the load balancers' subnets, so the cluster is drawn inside that one
        # group rather than in a second group of the same name.
        if private:
            lines.append("            end")
            lines.append(f"            subgraph {_id('PRIV', r)}[{_q(f'Private subnets ({len(net.azs)} AZs)')}]")
        eks = _id("EKS", r)
        title = f"EKS cluster {system.name}-{environment} (Kubernetes {system.cluster.kubernetes_version})"
        lines.append(f"                subgraph {eks}[{_q(title)}]")
        classes["k8s"].append(eks)
        for pool in system.cluster.node_pools:
            ng = _id("NG", r, pool.name)
            types = "/".join(pool.instance_types)
            low, _, high = scale.node_pool(system, r, pool.name)
            label = f"Node group {pool.name}: {low}-{high} x {types}" + (" (spot)" if pool.capacity == "spot" else "")
            lines.append(f"                    subgraph {ng}[{_q(label)}]")
            for name, svc in system.services.items():
                if (svc.node_pool or home) == pool.name:
                    kind = "Rollout" if svc.rollout.strategy == "canary" else "Deployment"
                    wl = _id("W", r, name)
                    pods = "{}-{}".format(*scale.replicas(system, r, environment, name))
                    lines.append(f"                        {_node(wl, f'{kind}: {name}<br/>{pods} replicas')}")
            lines.append("                    end")
        lines.append("                end")
        lines.append("            end")
        if private:
            lines.append(f"            subgraph {_id('DATA', r)}[{_q(f'Isolated subnets ({len(net.azs)} AZs)')}]")
        data_nodes: list[str] = []
        regional: list[str] = []
        for rname, res in sorted(system.resources.items()):
            nid = _id("D", r, rname)
            node = kind_of(res).region_node(rname, res, region=r, primary=primary)
            if node is None:
                continue
            where, label, shape = node
            if where == "data":
                data_nodes.append(_node(nid, label, shape))
                classes["data"].append(nid)
            else:
                regional.append(_node(nid, label, shape))
        indent = "                " if system.network.layout == "private" else "            "
        lines += [indent + d for d in data_nodes]
        if system.network.layout == "private":
            lines.append("            end")
        lines.append("        end")
        lines += ["        " + q for q in regional]
        lines.append("    end")
        # links from workloads
        for name, svc in system.services.items():
            wl = _id("W", r, name)
            if svc.routes and svc.expose == "ingress" and alb:
                links.append(f"    {alb} --> {wl}")
            if name in lbs:
                links.append(f"    {lbs[name]} --> {wl}")
            for callee in svc.calls:
                links.append(f"    {wl} --> {_id('W', r, callee)}")
            for used in svc.uses:
                res = system.resources[used]
                kind = kind_of(res)
                shared = kind.shared_node(used, res)
                links += ["    " + ln for ln in kind.diagram_links(
                    system, name, used, res, region=r, primary=primary, workload=wl, local=_id("D", r, used),
                    prim=_id("D", primary, used), shared=shared[0] + _id(used) if shared else None)]
            external_idp = edge.identity is not None and edge.identity.provider != "dev"
            if external_idp and not edge.api_gateway and any(rt.auth == "required" for rt in svc.routes):
                links.append(f"    {wl} -.->|JWKS| IdP")
        if edge.api_gateway and edge.identity and edge.identity.provider != "dev":
            links.append(f"    {_id('APIGW', r)} -.->|JWKS| IdP")
        links.append(f"    {eks} -.-> Shared")
        for rname, res in sorted(system.resources.items()):
            links += ["    " + ln for ln in kind_of(res).region_links(
                rname, res, region=r, primary=primary, local=_id("D", r, rname), prim=_id("D", primary, rname))]
    lines.append('    subgraph Shared["Shared services"]')
    lines.append(f"        {_node('Secrets', 'Secrets Manager<br/>credentials per resource')}")
    lines.append(f"        {_node('ECR', 'ECR<br/>one repository per service')}")
    retention = system.monitoring.log_retention_days
    lines.append(f"        {_node('CloudWatch', f'CloudWatch<br/>logs {retention} days')}")
    for rname, res in sorted(system.resources.items()):
        shared = kind_of(res).shared_node(rname, res)
        if shared is not None:
            prefix, label, shape = shared
            lines.append(f"        {_node(prefix + _id(rname), label, shape)}")
    lines.append("    end")
    if system.monitoring.prometheus:
        lines += ['    subgraph Observability["Observability (in-cluster)"]', '        Prometheus["Prometheus"]']
        if system.monitoring.grafana:
            lines += ['        Grafana["Grafana"]', "    end", "    Prometheus --> Grafana"]
        else:
            lines.append("    end")
    lines += links
    lines.append(STYLES)
    for cls, ids in classes.items():
        if ids:
            lines.append(f"    class {','.join(ids)} {cls}")
    return Diagram("deployment", "Deployment", "\n".join(lines))


def _safe_message(line: str) -> str:
    """Mermaid ends a sequence statement at ';' and starts an entity at '#': keep them out of message text."""
    if ":" not in line:
        return line
    head, text = line.split(":", 1)
    return head + ":" + text.replace(";", ",").replace("#", "no. ")


def edge_hops(system: System, *, via_cdn: bool) -> list[tuple[str, str]]:
    """The edge services a request meets, in order: Route 53, CloudFront, WAF, API Gateway.

    This is the order in AWS: Route 53 only resolves the name; CloudFront (for content it serves) is the
    first hop that sees the request; a WAF web ACL is attached to CloudFront or to the regional API
    Gateway stage / ALB and inspects the request there, before it reaches API Gateway or the ALB. Every
    diagram uses this one order.
    """
    edge = system.edge
    hops = [("R53", "Route 53")]
    if via_cdn:
        hops.append(("CDN", "CloudFront"))
    if edge.waf:
        hops.append(("WAF", "AWS WAF"))
    if edge.api_gateway and not via_cdn:
        hops.append(("GW", "API Gateway"))
    return hops


def main_route(routes: list[Route]) -> Route:
    """The route that stands for a service's main use case: the first one not limited to a role."""
    return next((r for r in routes if not r.roles), routes[0])


def sequences(system: System) -> list[Diagram]:
    """One request/data-flow sequence per routed service (its main route), through queues to workers."""
    out: list[Diagram] = []
    edge = system.edge
    primary = system.primary_region.name
    for name, svc in system.services.items():
        if not svc.routes:
            continue
        route = main_route(svc.routes)
        method = (route.methods or ["GET"])[0]
        req = f"{method} {route.path}"
        via_cdn = svc.kind == "web" and edge.cdn
        parts: list[tuple[str, str]] = [("Client", "actor"), *edge_hops(system, via_cdn=via_cdn)]
        lb = "ALB (Ingress)" if svc.expose == "ingress" else "Load balancer"
        parts.append(("LB", lb))
        parts.append((_id("S", name), name))
        consumers: list[tuple[str, str]] = []
        for used in svc.uses:
            res = system.resources[used]
            label = kind_of(res).sequence_label(used, res, detailed=True)
            parts.append((_id("R", used), label))
            consumers += [(q, used) for q in kind_of(res).consumed_by(system, used, res) if q != name]
        for callee in svc.calls:
            parts.append((_id("S", callee), callee))
        for consumer, _ in consumers:
            if (_id("S", consumer), consumer) not in parts:
                parts.append((_id("S", consumer), consumer))
            for used in system.services[consumer].uses:
                res = system.resources[used]
                ident = _id("R", used)
                if all(p[0] != ident for p in parts):
                    label = kind_of(res).sequence_label(used, res, detailed=False)
                    parts.append((ident, label))
        lines = ["sequenceDiagram", "    autonumber"]
        for ident, label in parts:
            lines.append(f"    actor {ident}" if label == "actor" else f"    participant {ident} as {label}")
        auth = route.auth == "required"
        lines.append(f"    Client->>R53: resolve {edge.domain}")
        lines.append("    R53-->>Client: nearest healthy region" if len(system.regions) > 1
                     else "    R53-->>Client: load balancer address")
        hop = "Client"
        msg = req + (" + Bearer JWT" if auth else "")
        if via_cdn:
            lines.append(f"    Client->>CDN: {msg}")
            lines.append("    alt cached")
            lines.append("        CDN-->>Client: cached asset")
            lines.append("    end")
            hop = "CDN"
        if edge.waf:
            lines.append(f"    {hop}->>WAF: {msg}")
            lines.append(f"    WAF->>WAF: managed rules, {edge.waf.rate_limit_per_5min} req / 5 min per IP")
            hop = "WAF"
        if edge.api_gateway and not via_cdn:
            lines.append(f"    {hop}->>GW: {msg}")
            check = "validate JWT (issuer, audience, JWKS), throttle" if auth else "throttle"
            lines.append(f"    GW->>GW: {check}")
            hop = "GW"
        lines.append(f"    {hop}->>LB: {req}")
        sid = _id("S", name)
        lines.append(f"    LB->>{sid}: {req}")
        limit = route.rate_limit or edge.default_rate_limit
        if auth and not edge.api_gateway:
            lines.append(f"    {sid}->>{sid}: verify JWT" + (f", rate limit {limit}" if limit else ""))
        elif limit:
            lines.append(f"    {sid}->>{sid}: rate limit {limit}")
        for used in svc.uses:
            res = system.resources[used]
            rid = _id("R", used)
            request = kind_of(res).sequence_request(system, name, used, res, primary=primary)
            lines.append(f"    {sid}->>{rid}: {request}")
            lines.append(f"    {rid}-->>{sid}: ok")
        for callee in svc.calls:
            lines.append(f"    {sid}->>{_id('S', callee)}: HTTP")
            lines.append(f"    {_id('S', callee)}-->>{sid}: response")
        lines.append(f"    {sid}-->>LB: response")
        lines.append(f"    LB-->>{hop if hop != 'Client' else 'Client'}: response")
        if hop != "Client":
            lines.append(f"    {hop}-->>Client: response")
        for consumer, queue in consumers:
            cid, qid = _id("S", consumer), _id("R", queue)
            auto = system.services[consumer].autoscale
            scale = (f" (KEDA scales it at {auto.target_queue_depth} messages per replica)"
                     if auto and auto.queue == queue else "")
            lines.append(f"    Note over {qid},{cid}: asynchronously{scale}")
            lines.append(f"    {cid}->>{qid}: receive messages")
            for used in system.services[consumer].uses:
                if used == queue:
                    continue
                res = system.resources[used]
                verb = kind_of(res).consumer_verb.format(primary=primary)
                lines.append(f"    {cid}->>{_id('R', used)}: {verb}")
            ack = kind_of(system.resources[queue]).sequence_ack(system, queue, system.resources[queue])
            lines.append(f"    {cid}->>{qid}: {ack}")
        title = f"{name}: {req}" + (f" ({svc.description})" if svc.description else "")
        out.append(Diagram(f"sequence-{name}", title, "\n".join(_safe_message(ln) for ln in lines)))
    return out


def network(system: System) -> Diagram:
    """The primary region's VPC: subnets per AZ, NAT gateways and the internet gateway."""
    region = system.primary_region.name
    net = layout(system, region)
    lines = ["flowchart TB", '    IGW["Internet gateway"]',
             f"    subgraph VPC[{_q(f'VPC {region} {net.vpc_cidr}')}]"]
    holds = {"public": "load balancers" + (", NAT gateway" if net.nat_azs else ", nodes, pods"),
             "private": "EKS nodes + pods", "isolated": "databases, caches (no internet route)"}
    for az in net.azs:
        lines.append(f"        subgraph {_id('AZ', az)}[{_q(az)}]")
        for sub in (s for s in net.subnets if s.az == az):
            label = f"{sub.tier} {sub.cidr}<br/>{holds[sub.tier]}<br/>{sub.usable:,} IPs"
            lines.append(f"            {_node(_id(sub.tier, az), label)}")
        if az in net.nat_azs:
            lines.append(f"            {_node(_id('NAT', az), 'NAT gateway')}")
        lines.append("        end")
    if system.network.vpc_endpoints and system.network.layout == "private":
        lines.append(f"        {_node('VPCE', 'VPC endpoints<br/>' + ', '.join(INTERFACE_ENDPOINTS) + ', S3 gateway')}")
    lines.append("    end")
    for az in net.azs:
        lines.append(f"    {_id('public', az)} --> IGW")
        if system.network.layout == "private":
            nat_az = az if az in net.nat_azs else net.nat_azs[0]
            lines.append(f"    {_id('private', az)} --> {_id('NAT', nat_az)}")
            if system.network.vpc_endpoints:
                lines.append(f"    {_id('private', az)} -.-> VPCE")
    for nat_az in net.nat_azs:
        lines.append(f"    {_id('NAT', nat_az)} --> {_id('public', nat_az)}")
    lines.append(STYLES)
    return Diagram("network", f"VPC network layout ({region})", "\n".join(lines))


def all_diagrams(system: System, environment: str) -> list[Diagram]:
    """Deployment, one sequence per main use case, and the network layout."""
    return [deployment(system, environment), *sequences(system), network(system)]


def render_svg(diagram: Diagram, timeout_s: float = 60.0) -> str | None:
    """SVG text of a diagram via ``mmdc`` when it is installed and works, else None."""
    mmdc = shutil.which("mmdc")
    if mmdc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, cfg = Path(tmp) / "d.mmd", Path(tmp) / "d.svg", Path(tmp) / "puppeteer.json"
        src.write_text(diagram.source)
        # Chromium refuses to run as root without --no-sandbox; use the system Chromium when there is one.
        puppeteer: dict[str, object] = {"args": ["--no-sandbox", "--disable-gpu"]}
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:
            puppeteer["executablePath"] = browser
        cfg.write_text(json.dumps(puppeteer))
        try:
            subprocess.run([mmdc, "-p", str(cfg), "-i", str(src), "-o", str(dst), "--quiet"], check=True,
                           timeout=timeout_s, capture_output=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return dst.read_text() if dst.is_file() else None
