"""The edge's route table: what the internet can reach, computed once from the spec.

One ordered list of rules, read by both edges, so that what a developer tries against ``stackwright up``
is what the internet gets from the ALB in production:

* the local gateway (:mod:`stackwright.local.gateway`) matches every request against :meth:`EdgeTable.match`;
* the ALB Ingress (:mod:`stackwright.render.k8s.ingress`) renders the same rules, in the same order, as
  ``ImplementationSpecific`` paths with ``alb.ingress.kubernetes.io/actions.*`` / ``conditions.*``.

Matching follows the ALB's listener rules, so that both edges agree by construction:

* rules are tried in order and the first whose conditions all hold wins; no match is the listener's
  default action, a 404 (the AWS Load Balancer Controller's default for an Ingress without a default
  backend);
* a path pattern is compared, case-sensitively, with the request's path as sent (percent-encoding kept,
  no dot-segment or slash normalisation; the query string is not part of it); ``*`` matches any run of
  characters, ``/`` included, and ``?`` exactly one (AWS::ElasticLoadBalancingV2::ListenerRule
  PathPatternConfig);
* an ``http-request-method`` condition matches the method exactly, so a route open to GET lists HEAD too.

What the table decides beyond the spec's routes:

* **internal endpoints** every runtime service serves (:data:`INTERNAL_PATHS`: metrics, readiness, API
  docs) are answered 404 by the edge itself, ahead of every route, unless a route other than the
  catch-all ``/`` covers the path (a spec publishes ``/docs`` by routing it);
* **the health check path** (:data:`~stackwright.deploy.names.HEALTH_CHECK_PATH`, what Route 53
  requests on every regional origin) is answered 200 by the edge itself, so a service's own liveness
  endpoint is not public; Route 53 then tells whether the region's load balancer answers, not whether a
  particular service is alive (the ALB's own target health checks watch the services);
* **a method no route of the path accepts** is a 405 from the edge (after every forwarding rule), with
  ``Allow`` listing the methods of the path locally (an ALB fixed response cannot carry it);
* **request limits** of the ALB (:data:`ALB_LIMITS`) that the local gateway enforces with the ALB's status;
* **production-only protections** (:func:`production_only`): the WAF's per-IP rate rule and managed rule
  groups are not applied locally.

Services reached through their own NLB (``expose: load-balancer``) are plain TCP in production: no path
rule applies to them there. Their routes are in the table (the local gateway serves them on its one port),
and :attr:`EdgeTable.passthrough` names them so tests and docs can tell.

Pure data, no I/O: this module imports only :mod:`stackwright.spec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..contract import PLATFORM_PATHS
from ..spec import System
from ..spec.quantities import bytes_size
from .names import HEALTH_CHECK_PATH, route_host

#: Endpoints of every runtime service that are for the platform, never for the internet: Prometheus
#: metrics, readiness (kubelet and ALB target health checks), FastAPI's API docs. Each maps to the ALB
#: path patterns that block it.
INTERNAL_PATHS: dict[str, tuple[str, ...]] = {
    "/metrics": ("/metrics",),
    "/readyz": ("/readyz",),
    "/docs": ("/docs", "/docs/*"),
    "/redoc": ("/redoc",),
    "/openapi.json": ("/openapi.json",),
}

#: Status and body of the edge's own answers (ALB fixed responses; problem+json locally).
BLOCKED_STATUS = 404
HEALTH_STATUS = 200
METHOD_STATUS = 405


@dataclass(frozen=True)
class AlbLimits:
    """HTTP request limits of an Application Load Balancer, in bytes, and the status it answers past them.

    Source: AWS, "Quotas for your Application Load Balancers", section HTTP headers (request line 16 K,
    single header 16 K, whole request header 64 K; not adjustable), and "Troubleshoot your Application Load
    Balancers", HTTP 400: "The request header exceeded 16 K per request line, 16 K per single header, or
    64 K for the entire request header". How the ALB counts bytes is not documented; the local gateway
    counts ``METHOD SP target SP HTTP/1.1`` for the line and ``name: value`` per header (+ CRLF in the
    total), which can differ from the ALB by a few bytes at the boundary.
    """

    request_line: int = 16 * 1024
    single_header: int = 16 * 1024
    total_headers: int = 64 * 1024
    status: int = 400


ALB_LIMITS = AlbLimits()


@dataclass
class EdgeRoute:
    """One spec route as the edge sees it (``max_body`` in bytes, ``idle_timeout_s`` in seconds)."""

    pattern: str
    service: str
    methods: frozenset[str] | None = None
    auth: str = "none"
    #: ``auth: required`` only: bearer credentials with one of these prefixes are the service's own API keys,
    #: passed through unverified (the service verifies them); see :meth:`passes_through`.
    api_key_prefixes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    rate_limit: str | None = None
    max_body: int | None = None
    # Only routes whose spec says ``websocket: true`` accept WebSocket upgrades at the edge.
    websocket: bool = False
    # WebSocket routes only: sessions per upstream replica, and seconds without a message before the
    # session is closed (see stackwright.local.ws_proxy). None: no limit.
    max_connections: int | None = None
    idle_timeout_s: float | None = None
    #: Host name the route is limited to (None: every name the edge answers for).
    host: str | None = None
    specificity: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        literal = len(re.sub(r"\{[^}]*\}", "", self.pattern))
        self.specificity = (literal, self.pattern.count("/"))

    @property
    def path(self) -> str:
        """The route template, under the name request metrics label by (``scope["route"].path``)."""
        return self.pattern

    def passes_through(self, credential: str) -> bool:
        """Whether the edge leaves ``credential`` (a bearer token's value) to the service: one of the route's
        API keys. Neither edge verifies it then (the ALB verifies no credential at all; the service checks
        every one), so an API key works the same through ``stackwright up`` and in production."""
        return bool(self.api_key_prefixes) and credential.startswith(self.api_key_prefixes)

    @property
    def is_catch_all(self) -> bool:
        """The route ``/``: everything no other route takes (it never publishes an internal endpoint)."""
        return self.pattern.rstrip("/") == ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the gateway's config file)."""
        return {"pattern": self.pattern, "service": self.service,
                "methods": sorted(self.methods) if self.methods else None, "auth": self.auth,
                "api_key_prefixes": list(self.api_key_prefixes),
                "roles": list(self.roles), "rate_limit": self.rate_limit, "max_body": self.max_body,
                "websocket": self.websocket, "max_connections": self.max_connections,
                "idle_timeout_s": self.idle_timeout_s, "host": self.host}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeRoute:
        """Inverse of :meth:`to_dict` (missing keys take their defaults)."""
        methods = data.get("methods")
        return cls(pattern=data["pattern"], service=data["service"],
                   methods=frozenset(methods) if methods else None, auth=data.get("auth", "none"),
                   api_key_prefixes=tuple(data.get("api_key_prefixes", ())),
                   roles=tuple(data.get("roles", ())), rate_limit=data.get("rate_limit"),
                   max_body=data.get("max_body"), websocket=bool(data.get("websocket", False)),
                   max_connections=data.get("max_connections"), idle_timeout_s=data.get("idle_timeout_s"),
                   host=data.get("host"))


def alb_patterns(path: str) -> list[str]:
    """ALB path patterns of a spec route path: ``{param}`` segments become ``*``; a path without
    parameters covers itself and everything below it (``/polls`` -> ``/polls``, ``/polls/*``; ``/`` -> ``/*``)."""
    if "{" in path:
        return [re.sub(r"\{[^}]*\}", "*", path)]
    base = path.rstrip("/")
    return ["/*"] if not base else [base, f"{base}/*"]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The ALB path pattern as a regular expression matched against the whole raw path."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _literal_length(pattern: str) -> int:
    return len(pattern.replace("*", "").replace("?", ""))


def action_name(service: str, methods: frozenset[str] | list[str]) -> str:
    """Name of the forward action for a service limited to some methods (``vote-post``), from the spec's
    methods (HEAD added for GET does not change it)."""
    return f"{service}-{'-'.join(m.lower() for m in sorted(methods))}"[:63]


def matched_methods(methods: frozenset[str] | None) -> frozenset[str] | None:
    """The methods a rule matches: the route's, plus HEAD wherever GET is (None: every method)."""
    if methods is None:
        return None
    return methods | {"HEAD"} if "GET" in methods else methods


Kind = Literal["forward", "fixed"]


@dataclass(frozen=True)
class Rule:
    """One listener rule: a path pattern (ALB syntax), optional host and methods, and what happens.

    ``forward``: to ``route.service`` under ``action`` (the Ingress backend: the service, or a named forward
    action when ``methods`` is set). ``fixed``: the edge answers ``status`` itself (``reason`` says why).
    """

    pattern: str
    kind: Kind
    action: str
    methods: frozenset[str] | None = None
    route: EdgeRoute | None = None
    status: int | None = None
    reason: str = ""
    host: str | None = None

    def matches(self, method: str, path: str, host: str | None = None) -> bool:
        """Whether this rule takes a request (``path``: the raw path, without the query string)."""
        if self.host is not None and (host or "").split(":")[0].lower() != self.host.lower():
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return _regex(self.pattern).fullmatch(path) is not None


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = pattern_regex(pattern)
    return compiled


@dataclass(frozen=True)
class Outcome:
    """What the edge does with one request: ``forward`` to ``service`` (``route`` is the spec route it
    matched) or answer ``status`` itself (``reason`` says why; ``allow`` lists the path's methods on 405)."""

    kind: Kind
    status: int | None = None
    service: str | None = None
    route: EdgeRoute | None = None
    reason: str = ""
    allow: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``service`` for a forward, ``status`` (as text) for an answer of the edge: one comparable value."""
        return f"-> {self.service}" if self.kind == "forward" else str(self.status)


@dataclass(frozen=True)
class EdgeTable:
    """The ordered rules both edges apply; see the module docstring.

    ``local_only``: path prefixes only the local edge serves (the dev identity provider standing in for
    the spec's identity provider); ``passthrough``: services behind their own NLB in production.
    """

    rules: tuple[Rule, ...]
    local_only: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()
    limits: AlbLimits = ALB_LIMITS

    def match(self, method: str, path: str, host: str | None = None) -> Outcome:
        """The outcome of ``method`` on the raw ``path`` (no query string), as the ALB would decide it."""
        for rule in self.rules:
            if rule.matches(method, path, host):
                if rule.kind == "forward":
                    assert rule.route is not None
                    return Outcome("forward", service=rule.route.service, route=rule.route)
                allow = tuple(self.allowed(path, host)) if rule.status == METHOD_STATUS else ()
                return Outcome("fixed", status=rule.status, reason=rule.reason, allow=allow)
        return Outcome("fixed", status=BLOCKED_STATUS, reason="no route for this path")

    def allowed(self, path: str, host: str | None = None) -> list[str]:
        """Every method some forwarding rule accepts on ``path`` (for a 405's ``Allow``: RFC 9110 §15.5.6
        asks for the methods of the whole path, not of the first rule that matched it)."""
        methods: set[str] = set()
        for rule in self.rules:
            if rule.kind == "forward" and rule.methods is not None and rule.matches(next(iter(rule.methods)),
                                                                                    path, host):
                methods |= rule.methods
        return sorted(methods)

    def routes(self) -> list[EdgeRoute]:
        """The spec routes the table forwards to, each once, in rule order."""
        seen: dict[int, EdgeRoute] = {}
        for rule in self.rules:
            if rule.route is not None:
                seen.setdefault(id(rule.route), rule.route)
        return list(seen.values())


def compile_routes(routes: list[EdgeRoute], *, local_only: tuple[str, ...] = (),
                   passthrough: tuple[str, ...] = ()) -> EdgeTable:
    """The ordered rules for ``routes``: internal endpoints and the health check first, then each route's
    patterns from the most specific (longest fixed text) down, then the 405 answers.

    Where two routes give the same pattern and action (``/polls`` and ``/polls/{id}`` both give ``/polls/*``
    for GET), the more specific route owns the rule.
    """
    ordered = sorted(routes, key=lambda r: r.specificity, reverse=True)
    forward: dict[tuple[str | None, str, str], Rule] = {}
    for route in ordered:
        action = action_name(route.service, route.methods) if route.methods else route.service
        for pattern in alb_patterns(route.pattern):
            key = (route.host, pattern, action)
            if key not in forward:
                forward[key] = Rule(pattern, "forward", action, matched_methods(route.methods), route,
                                    host=route.host)
    routed = sorted(forward.values(),
                    key=lambda r: (r.host is None, -_literal_length(r.pattern), r.pattern, r.action))

    def published(path: str) -> bool:
        # Only a route naming the path opens it: the catch-all "/" serves pages, not a service's internals.
        # A route limited to a host opens it too (the block rules answer for every name, ahead of the routes).
        return any(r.route is not None and not r.route.is_catch_all
                   and r.matches(next(iter(r.methods or {"GET"})), path, r.host) for r in routed)

    edge: list[Rule] = []
    if not published(HEALTH_CHECK_PATH):
        edge.append(Rule(HEALTH_CHECK_PATH, "fixed", "health", status=HEALTH_STATUS,
                         reason="the edge's health check (Route 53 requests it on every regional origin)"))
    for path, patterns in INTERNAL_PATHS.items():
        if not published(path):
            edge.extend(Rule(p, "fixed", "blocked", status=BLOCKED_STATUS,
                             reason=f"{path} is internal (not published by any route)") for p in patterns)
    # A path whose routes all name their methods: any other method is a 405 from the edge, after every
    # forwarding rule (so a less specific route that accepts the method still gets the request).
    unlimited = {(r.host, r.pattern) for r in routed if r.methods is None}
    limited = [(r.host, r.pattern) for r in routed if r.methods is not None and (r.host, r.pattern) not in unlimited]
    if (None, "/*") in limited:  # one rule covers every path
        limited = [(None, "/*")]
    refusals = [Rule(p, "fixed", "method-not-allowed", status=METHOD_STATUS, host=h,
                     reason="no route of this path accepts the method") for h, p in dict.fromkeys(limited)]
    return EdgeTable(rules=(*edge, *routed, *refusals), local_only=local_only, passthrough=passthrough)


def spec_routes(system: System, environment: str | None = None) -> list[EdgeRoute]:
    """Every spec route of a service the edge serves (any ``expose`` but ``internal``), in spec order, with
    its ``host:`` label turned into the full name in ``environment`` (None: the local gateway's)."""
    routes = []
    for sname, svc in system.services.items():
        if svc.expose == "internal":
            continue
        for r in svc.routes:
            routes.append(EdgeRoute(
                pattern=r.path, service=sname, methods=frozenset(r.methods) if r.methods else None,
                auth=r.auth, api_key_prefixes=tuple(r.api_key_prefixes), roles=tuple(r.roles),
                rate_limit=r.rate_limit,
                max_body=bytes_size(r.max_body) if r.max_body else None, websocket=r.websocket,
                max_connections=r.max_connections, idle_timeout_s=r.idle_timeout_s,
                host=route_host(system, environment, r.host) if r.host else None))
    return routes


def edge_table(system: System, environment: str | None = None, *, alb_only: bool = False) -> EdgeTable:
    """The route table of ``system`` in ``environment``; None: what the local gateway serves on its one port.

    The environment only names the hosts of routes limited to one (``host: api`` is ``api.<domain>`` in
    production, ``api.localhost`` locally); the rules are otherwise the same everywhere. ``alb_only``: the
    ALB Ingress's rules, without the routes of services behind their own NLB (those are TCP in production,
    on their own host name).
    """
    ident = system.edge.identity
    local_only: tuple[str, ...] = ()
    if ident is not None:
        mount = ident.local_mount.rstrip("/")
        local_only = (f"{mount}/dev/", f"{mount}/.well-known/")
    passthrough = tuple(n for n, s in system.services.items() if s.expose == "load-balancer" and s.routes)
    routes = [r for r in spec_routes(system, environment) if not (alb_only and r.service in passthrough)]
    return compile_routes(routes, local_only=local_only, passthrough=() if alb_only else passthrough)


def published_paths(system: System, service: str) -> tuple[str, ...]:
    """The platform endpoints (:data:`~stackwright.contract.PLATFORM_PATHS`) a spec route publishes on
    ``service``: those the edge forwards to it, which its application port then serves as well."""
    table = edge_table(system)
    hosts = {None, *(r.host for r in table.rules)}
    return tuple(p for p in sorted(PLATFORM_PATHS) if any(table.match("GET", p, h).service == service for h in hosts))


def production_only(system: System) -> list[str]:
    """Protections of the production edge the local gateway does not apply, one line each (empty: none)."""
    notes = []
    waf = system.edge.waf
    if waf is not None:
        notes.append(f"WAF rate-based rule: {waf.rate_limit_per_5min} requests per client IP per 5 minutes "
                     f"(blocked with 403); locally only the spec's rate_limits apply")
        if waf.managed_rules:
            notes.append("WAF AWS managed rule groups (IP reputation, common, known bad inputs, SQL injection)")
    return notes


def table_to_dict(table: EdgeTable) -> dict[str, Any]:
    """JSON form of a table (the local gateway's config file): routes once, rules pointing at them by index."""
    routes = table.routes()
    index = {id(r): i for i, r in enumerate(routes)}
    rules = [{"pattern": r.pattern, "kind": r.kind, "action": r.action,
              "methods": sorted(r.methods) if r.methods is not None else None,
              "route": index[id(r.route)] if r.route is not None else None,
              "status": r.status, "reason": r.reason, "host": r.host} for r in table.rules]
    return {"routes": [r.to_dict() for r in routes], "rules": rules, "local_only": list(table.local_only),
            "passthrough": list(table.passthrough)}


def table_from_dict(data: dict[str, Any]) -> EdgeTable:
    """Inverse of :func:`table_to_dict`. Without ``rules`` (a hand-written config), the routes are compiled."""
    routes = [EdgeRoute.from_dict(r) for r in data["routes"]]
    local_only = tuple(data.get("local_only") or ())
    passthrough = tuple(data.get("passthrough") or ())
    if data.get("rules") is None:
        return compile_routes(routes, local_only=local_only, passthrough=passthrough)
    rules = tuple(Rule(pattern=r["pattern"], kind=r["kind"], action=r["action"],
                       methods=frozenset(r["methods"]) if r.get("methods") is not None else None,
                       route=routes[r["route"]] if r.get("route") is not None else None,
                       status=r.get("status"), reason=r.get("reason", ""), host=r.get("host"))
                  for r in data["rules"])
    return EdgeTable(rules=rules, local_only=local_only, passthrough=passthrough)
