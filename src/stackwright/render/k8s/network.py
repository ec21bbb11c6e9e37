"""NetworkPolicies: deny everything in the namespace, then allow exactly what the spec implies.

* DNS egress to kube-dns for every pod.
* Ingress to a service from the services that list it under ``calls:``, from the load balancer
  (ALB/NLB with IP targets sends from addresses inside the VPC) when it is routed or exposed, and from
  Prometheus in the monitoring namespace.
* Egress to the services it calls, to the AWS data stores it uses on their ports (inside the VPC; the
  primary region's VPC too for writes from a secondary region), to AWS APIs on 443 for queues, buckets
  and topics, and to the identity provider on 443 when it verifies tokens.
"""

from __future__ import annotations

from typing import Any

from ...contract import CONTAINER_PLATFORM_PORT
from ...deploy import names as naming
from ...deploy.placement import hosting_region
from ...resources import KINDS, kind_of
from ...spec import System
from .context import Target, obj
from .ingress import health_check_port

ANYWHERE = "0.0.0.0/0"
IMDS = "169.254.169.254/32"
#: Ports of the data stores that live inside the VPC (from each kind's ``vpc_port``).
DATA_STORE_PORTS = {k: impl.vpc_port for k, impl in KINDS.items() if impl.vpc_port is not None}
#: Resource kinds reached through AWS HTTPS APIs, and whether an interface VPC endpoint serves them.
AWS_API_KINDS = {k: impl.aws_api for k, impl in KINDS.items() if impl.aws_api is not None}


def _np(t: Target, name: str, spec: dict[str, Any], service: str | None = None) -> dict[str, Any]:
    return obj("networking.k8s.io/v1", "NetworkPolicy", t.meta(name, service, component="network"), spec=spec)


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in sorted(set(ports))]


def default_deny(t: Target) -> dict[str, Any]:
    """Deny all ingress and egress for every pod of the namespace."""
    return _np(t, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def allow_dns(t: Target) -> dict[str, Any]:
    """Every pod may resolve names through kube-dns."""
    to = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    ports = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    return _np(t, "allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": to, "ports": ports}]})


def callers(system: System, service: str) -> list[str]:
    """Services that call ``service`` (sorted)."""
    return sorted(name for name, svc in system.services.items() if service in svc.calls)


def load_balanced(t: Target, service: str) -> bool:
    """Whether a load balancer sends traffic to the service (ALB route or its own NLB)."""
    svc = t.service(service)
    return svc.expose == "load-balancer" or (svc.expose == "ingress" and bool(svc.routes))


def verifies_tokens(t: Target, service: str) -> bool:
    """Whether a service checks JWTs (so it fetches the IdP's JWKS over the internet)."""
    svc = t.service(service)
    return t.system.edge.identity is not None and any(r.auth == "required" for r in svc.routes)


def _cidrs(cidrs: list[str]) -> list[dict[str, Any]]:
    out = []
    for cidr in sorted(set(cidrs)):
        block: dict[str, Any] = {"cidr": cidr}
        if cidr == ANYWHERE:
            block["except"] = [IMDS]
        out.append({"ipBlock": block})
    return out


def _ingress(t: Target, service: str) -> list[dict[str, Any]]:
    svc = t.service(service)
    port = svc.port
    rules: list[dict[str, Any]] = []
    sources = [{"podSelector": {"matchLabels": t.selector(c)}} for c in callers(t.system, service)]
    if sources:
        rules.append({"from": sources, "ports": _tcp(port)})
    if load_balanced(t, service):
        # The load balancer's health checks go to the platform port when they request a runtime endpoint.
        checks = {port if health_check_port(svc.probes.readiness.path) == "traffic-port" else CONTAINER_PLATFORM_PORT}
        rules.append({"from": _cidrs([t.region.vpc_cidr]), "ports": _tcp(port, *checks)})
    if t.system.monitoring.prometheus:  # scrapes /metrics on the platform port
        rules.append({"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": naming.MONITORING_NAMESPACE}}}], "ports": _tcp(CONTAINER_PLATFORM_PORT)})
    return rules


def _egress(t: Target, service: str) -> list[dict[str, Any]]:
    system, svc = t.system, t.service(service)
    rules: list[dict[str, Any]] = []
    for callee in sorted(svc.calls):
        rules.append({"to": [{"podSelector": {"matchLabels": t.selector(callee)}}],
                      "ports": _tcp(system.services[callee].port)})
    cidr = {r.name: r.vpc_cidr for r in system.regions}
    here = t.region.name
    by_cidrs: dict[tuple[str, ...], set[int]] = {}
    api_private = system.network.vpc_endpoints
    for name in sorted(svc.uses):
        res = system.resources[name]
        home = hosting_region(system, name, here)
        if res.kind in DATA_STORE_PORTS:
            cidrs = {cidr[home]}
            if kind_of(res).writes_to_primary and here != system.primary_region.name:
                cidrs.add(system.primary_region.vpc_cidr)  # writes go to the primary region
            by_cidrs.setdefault(tuple(sorted(cidrs)), set()).add(DATA_STORE_PORTS[res.kind])
        elif res.kind in AWS_API_KINDS:
            # Interface endpoints serve only their own region's API; S3/SNS go out on 443.
            api_private = api_private and AWS_API_KINDS[res.kind] and home == here
    if any(system.resources[n].kind in AWS_API_KINDS for n in svc.uses):
        by_cidrs.setdefault((cidr[here],) if api_private else (ANYWHERE,), set()).add(443)
    if verifies_tokens(t, service):
        by_cidrs.setdefault((ANYWHERE,), set()).add(443)
    for cidrs, ports in sorted(by_cidrs.items()):
        rules.append({"to": _cidrs(list(cidrs)), "ports": _tcp(*ports)})
    return rules


def service_policy(t: Target, service: str) -> dict[str, Any]:
    """Allow-list of one service (ingress and egress), on top of default-deny."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": t.selector(service)},
                            "policyTypes": ["Ingress", "Egress"]}
    ingress, egress = _ingress(t, service), _egress(t, service)
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return _np(t, service, spec, service)


def namespace_policies(t: Target) -> list[dict[str, Any]]:
    """The namespace-wide policies (default deny, DNS)."""
    return [default_deny(t), allow_dns(t)]
