"""Edge route table as the local gateway uses it: the rules of :mod:`stackwright.deploy.routes`, the same
ones the ALB Ingress is rendered from, with the ``(route, verdict)`` view the gateway's callers know."""

from __future__ import annotations

from ..deploy.routes import EdgeRoute, EdgeTable, Outcome, compile_routes

__all__ = ["EdgeRoute", "EdgeTable", "Outcome", "RouteTable"]


class RouteTable:
    """Routes compiled into the edge's rules; ``match`` returns the route, or the edge's own status."""

    def __init__(self, routes: list[EdgeRoute] | EdgeTable) -> None:
        self.table = routes if isinstance(routes, EdgeTable) else compile_routes(routes)

    def match(self, path: str, method: str) -> tuple[EdgeRoute | None, int]:
        """(route, 200) when forwarded; else (None, status): 404 unknown or internal, 405 wrong method,
        200 the health check the edge answers itself. ``path`` is the raw path (no query string)."""
        outcome = self.table.match(method, path)
        if outcome.kind == "forward":
            return outcome.route, 200
        assert outcome.status is not None
        return None, outcome.status

    def allowed(self, path: str) -> list[str]:
        """Every method some route accepts on ``path`` (HEAD wherever GET is), for a 405's ``Allow``."""
        return self.table.allowed(path)
