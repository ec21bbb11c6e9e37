"""The edge on EKS: one ALB Ingress (AWS Load Balancer Controller) for every routed service, and an
NLB Service for each service with ``expose: load-balancer``.

The Ingress's paths are the rules of :mod:`stackwright.deploy.routes`, in their order, the same rules the
local gateway applies: ``ImplementationSpecific`` paths are ALB path patterns (``{param}`` segments turn into
``*``; a route without parameters matches its path and everything below it, ``/polls`` and ``/polls/*``).
Routes limited to some methods go through a forward action with an ``http-request-method`` condition, so
``GET /polls`` and ``POST /polls`` can reach different services; what the edge answers itself (internal
endpoints 404, the health check 200, a method no route of the path takes 405) are fixed-response actions.
"""

from __future__ import annotations

import json
from typing import Any

from ...contract import ALB_IDLE_TIMEOUT_S, CONTAINER_PLATFORM_PORT, PLATFORM_PATHS
from ...deploy import names as naming
from ...deploy.routes import Rule, alb_patterns, edge_table
from ...spec.model import Route
from ...spec.shutdown import default_deregistration_delay, termination
from .context import Target, obj

ALB = "alb.ingress.kubernetes.io/"
NLB = "service.beta.kubernetes.io/aws-load-balancer-"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
EXTERNAL_DNS = "external-dns.alpha.kubernetes.io/hostname"
BLOCKED_ACTION = "blocked"
_FIXED_BODIES = {200: "ok", 404: "not found", 405: "method not allowed"}


def alb_paths(route: Route) -> list[str]:
    """ALB path patterns of one route."""
    return alb_patterns(route.path)


def routed_services(t: Target) -> list[str]:
    """Services the ALB routes to (``expose: ingress`` with at least one route)."""
    return [n for n, s in t.system.services.items() if s.expose == "ingress" and s.routes]


def _lb_attributes(t: Target, prefix: str, extra: list[str]) -> str:
    bucket = naming.alb_log_bucket(t.system, t.environment, t.region.name)
    attrs = ["deletion_protection.enabled=true", "access_logs.s3.enabled=true",
             f"access_logs.s3.bucket={bucket}", f"access_logs.s3.prefix={prefix}", *extra]
    return ",".join(attrs)


def _backend(t: Target, rule: Rule) -> dict[str, Any]:
    if rule.kind == "forward" and rule.methods is None:
        assert rule.route is not None
        port = t.system.services[rule.route.service].service_port
        return {"service": {"name": rule.route.service, "port": {"number": port}}}
    return {"service": {"name": rule.action, "port": {"name": "use-annotation"}}}


def ingress(t: Target) -> dict[str, Any] | None:
    """The ALB Ingress, or None when nothing is routed."""
    system = t.system
    if not routed_services(t):
        return None
    table = edge_table(system, t.environment, alb_only=True)
    actions: dict[str, dict[str, Any]] = {}
    conditions: dict[str, list[dict[str, Any]]] = {}
    by_host: dict[str | None, list[dict[str, Any]]] = {}
    hosts = sorted({r.host for r in table.rules if r.host is not None})
    for rule in table.rules:
        if rule.kind == "fixed":
            assert rule.status is not None
            actions[rule.action] = {"type": "fixed-response", "fixedResponseConfig": {
                "contentType": "text/plain", "statusCode": str(rule.status),
                "messageBody": _FIXED_BODIES.get(rule.status, "")}}
        elif rule.methods is not None:
            assert rule.route is not None
            svc = system.services[rule.route.service]
            actions[rule.action] = {"type": "forward", "forwardConfig": {"targetGroups": [
                {"serviceName": rule.route.service, "servicePort": str(svc.service_port)}]}}
            conditions[rule.action] = [{"field": "http-request-method",
                                        "httpRequestMethodConfig": {"Values": sorted(rule.methods)}}]
        path = {"path": rule.pattern, "pathType": "ImplementationSpecific", "backend": _backend(t, rule)}
        # The ALB tries an Ingress's host rules before its host-less one, so each host lists, in the table's
        # order, the host-less rules too (the internal blocks ahead of its own routes, as in the table).
        for host in [rule.host] if rule.host is not None else [*hosts, None]:
            by_host.setdefault(host, []).append(path)
    # Rules for a named host first; the rule without a host answers for every name that points at the ALB
    # (api., writer., the origin).
    rules = [({"host": h} if h else {}) | {"http": {"paths": paths}}
             for h, paths in sorted(by_host.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]
    annotations = {
        ALB + "scheme": "internet-facing",
        ALB + "target-type": "ip",
        ALB + "ip-address-type": "ipv4",
        ALB + "backend-protocol": "HTTP",
        ALB + "listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]',
        ALB + "ssl-redirect": "443",
        ALB + "ssl-policy": TLS_POLICY,
        ALB + "healthcheck-protocol": "HTTP",
        ALB + "healthcheck-port": health_check_port("/readyz"),
        ALB + "healthcheck-path": "/readyz",
        ALB + "healthcheck-interval-seconds": "10",
        ALB + "healthcheck-timeout-seconds": "5",
        ALB + "healthy-threshold-count": "2",
        ALB + "unhealthy-threshold-count": str(system.edge.health_check_failure_threshold),
        ALB + "success-codes": "200",
        ALB + "load-balancer-attributes": _lb_attributes(t, system.name, [
            "routing.http.drop_invalid_header_fields.enabled=true",
            # WebSocket routes keep this (see stackwright.contract.ALB_IDLE_TIMEOUT_S): it is the whole
            # load balancer's setting, and their connections stay open through the server's pings.
            f"idle_timeout.timeout_seconds={ALB_IDLE_TIMEOUT_S}"]),
        ALB + "target-group-attributes": _deregistration(default_deregistration_delay(system)),
        ALB + "tags": f"System={system.name},Environment={t.environment}",
        # One certificate for the environment's names (apex, api., writer., <region>.), made by the AWS app.
        ALB + "certificate-arn": naming.CERTIFICATE_ARN,
        EXTERNAL_DNS: naming.origin_host(system, t.environment, t.region.name),
    }
    if system.edge.waf is not None:
        annotations[ALB + "wafv2-acl-arn"] = naming.WAF_ACL_ARN
    for action, config in actions.items():
        annotations[f"{ALB}actions.{action}"] = json.dumps(config, sort_keys=True)
    for action, config in conditions.items():
        annotations[f"{ALB}conditions.{action}"] = json.dumps(config, sort_keys=True)
    spec = {"ingressClassName": "alb", "rules": rules}
    return obj("networking.k8s.io/v1", "Ingress", t.meta(system.name, component="edge", annotations=annotations),
               spec=spec)


def health_check_port(path: str) -> str:
    """The port a load balancer's health check of ``path`` goes to: the pods' platform port for the
    runtime's endpoints (IP targets: the load balancer reaches each pod's own address, so that port is
    never exposed by the listener), the traffic port for a path of the app's own (fastapi-app's /health)."""
    return str(CONTAINER_PLATFORM_PORT) if path in PLATFORM_PATHS else "traffic-port"


def _deregistration(delay_s: int) -> str:
    return f"deregistration_delay.timeout_seconds={delay_s}"


def target_group_annotations(t: Target, service: str) -> dict[str, str]:
    """Per-service ALB target group settings: the health check (the service's own readiness path) and
    the deregistration delay its preStop sleep was sized for (Service annotations take precedence
    over the Ingress's, per the AWS Load Balancer Controller's annotation docs)."""
    svc = t.service(service)
    delay = termination(t.system, service).deregistration_delay_s
    return {ALB + "healthcheck-path": svc.probes.readiness.path,
            ALB + "healthcheck-port": health_check_port(svc.probes.readiness.path),
            ALB + "target-group-attributes": _deregistration(delay)}


def public_service_name(service: str) -> str:
    """Name of the LoadBalancer Service of a service exposed through its own NLB."""
    return f"{service}-public"


def load_balancer_service(t: Target, service: str) -> dict[str, Any]:
    """An internet-facing NLB (TLS on 443, IP targets) for ``expose: load-balancer``: only the application
    port behind it (plain TCP passes every path through, so the platform port must never be listed)."""
    svc = t.service(service)
    annotations = {
        NLB + "type": "external",
        NLB + "nlb-target-type": "ip",
        NLB + "scheme": "internet-facing",
        NLB + "ip-address-type": "ipv4",
        NLB + "ssl-cert": naming.CERTIFICATE_ARN,
        NLB + "ssl-ports": "443",
        NLB + "ssl-negotiation-policy": TLS_POLICY,
        NLB + "backend-protocol": "tcp",
        NLB + "healthcheck-protocol": "http",
        NLB + "healthcheck-port": health_check_port(svc.probes.readiness.path),
        NLB + "healthcheck-path": svc.probes.readiness.path,
        NLB + "healthcheck-interval": "10",
        NLB + "healthcheck-healthy-threshold": "2",
        NLB + "healthcheck-unhealthy-threshold": str(t.system.edge.health_check_failure_threshold),
        NLB + "attributes": _lb_attributes(t, f"{t.system.name}/{service}", ["load_balancing.cross_zone.enabled=true"]),
        NLB + "target-group-attributes": "preserve_client_ip.enabled=false,"
                                          + _deregistration(termination(t.system, service).deregistration_delay_s),
        NLB + "additional-resource-tags": f"System={t.system.name},Environment={t.environment}",
        EXTERNAL_DNS: f"{service}.{naming.origin_host(t.system, t.environment, t.region.name)}",
    }
    spec = {
        "type": "LoadBalancer",
        "loadBalancerClass": "service.k8s.aws/nlb",
        "selector": t.selector(service),
        "ports": [{"name": "https", "port": 443, "targetPort": "http", "protocol": "TCP"}],
    }
    meta = t.meta(public_service_name(service), service, component="edge", annotations=annotations)
    return obj("v1", "Service", meta, spec=spec)
