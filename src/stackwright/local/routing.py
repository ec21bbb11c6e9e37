"""Edge route table: match a request path and method to a service route, most specific first."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EdgeRoute:
    """One route as the gateway sees it."""

    pattern: str
    service: str
    methods: frozenset[str] | None = None
    auth: str = "none"
    roles: tuple[str, ...] = ()
    rate_limit: str | None = None
    max_body: int | None = None
    # Only routes whose spec says ``websocket: true`` accept WebSocket upgrades at the edge.
    websocket: bool = False
    # WebSocket routes only: sessions per upstream replica, and seconds without a message before the
    # session is closed (see ws_proxy). None: no limit.
    max_connections: int | None = None
    idle_timeout_s: float | None = None
    regex: re.Pattern[str] = field(init=False, repr=False)
    specificity: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if "{" in self.pattern:
            body = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(self.pattern))
            self.regex = re.compile(f"^{body}/?$")
        else:
            base = self.pattern.rstrip("/")
            # A literal route also owns everything below it: /auth/me covers /auth/me/x.
            self.regex = re.compile(f"^{re.escape(base)}(/.*)?$") if base else re.compile("^/.*$")
        literal = len(re.sub(r"\{[^}]*\}", "", self.pattern))
        self.specificity = (literal, self.pattern.count("/"))

    @property
    def path(self) -> str:
        """The route template, under the name request metrics label by (``scope["route"].path``)."""
        return self.pattern

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "service": self.service,
                "methods": sorted(self.methods) if self.methods else None, "auth": self.auth,
                "roles": list(self.roles), "rate_limit": self.rate_limit, "max_body": self.max_body,
                "websocket": self.websocket, "max_connections": self.max_connections,
                "idle_timeout_s": self.idle_timeout_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeRoute:
        methods = data.get("methods")
        return cls(pattern=data["pattern"], service=data["service"],
                   methods=frozenset(methods) if methods else None, auth=data.get("auth", "none"),
                   roles=tuple(data.get("roles", ())), rate_limit=data.get("rate_limit"),
                   max_body=data.get("max_body"), websocket=bool(data.get("websocket", False)),
                   max_connections=data.get("max_connections"), idle_timeout_s=data.get("idle_timeout_s"))


class RouteTable:
    """Ordered routes; ``match`` returns the route, or a 404/405 verdict."""

    def __init__(self, routes: list[EdgeRoute]) -> None:
        self.routes = sorted(routes, key=lambda r: r.specificity, reverse=True)

    def match(self, path: str, method: str) -> tuple[EdgeRoute | None, int]:
        """(route, 200) on a match, (None, 405) when the path exists for other methods, else (None, 404)."""
        path_matched = False
        for route in self.routes:
            if route.regex.match(path):
                if route.methods is None or method in route.methods or (
                        method == "HEAD" and "GET" in route.methods):
                    return route, 200
                path_matched = True
        return None, 405 if path_matched else 404

    def allowed(self, path: str) -> list[str]:
        """Every method some route accepts on ``path`` (HEAD wherever GET is), for a 405's ``Allow`` header
        (RFC 9110 §15.5.6: the methods of the whole path, not of the first route that matched it)."""
        methods: set[str] = set()
        for route in self.routes:
            if route.regex.match(path) and route.methods is not None:
                methods |= route.methods
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)
