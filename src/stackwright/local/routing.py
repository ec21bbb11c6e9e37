"""Edge route table as the local gateway uses it: the rules of :mod:`stackwright.deploy.routes`, the same
ones the ALB Ingress is rendered from, with the ``(route, verdict)`` view the gateway's callers know."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..deploy.names import LOCAL_HOST_PARENT, route_host
from ..deploy.routes import EdgeRoute, EdgeTable, Outcome, compile_routes
from ..spec import System

__all__ = ["EdgeRoute", "EdgeTable", "Outcome", "RouteTable", "dial", "host_url", "host_urls"]


def host_url(base: str, host: str) -> str:
    """The gateway at ``base`` (``http://127.0.0.1:8080``) under the name ``host`` (``api.localhost``):
    ``http://api.localhost:8080``, where the gateway's routes limited to that host answer."""
    url = urlsplit(base)
    return f"{url.scheme}://{host}:{url.port}" if url.port else f"{url.scheme}://{host}"


def host_urls(system: System, base: str) -> dict[str, str]:
    """``host label -> URL`` of every host the spec's routes are limited to, on the local gateway at ``base``."""
    labels = sorted({r.host for s in system.services.values() for r in s.routes if r.host})
    return {label: host_url(base, route_host(system, None, label)) for label in labels}


def dial(url: str) -> dict[str, Any]:
    """Connection keyword arguments (``host``, ``port``: websockets' ``connect``, asyncio's
    ``create_connection``) that reach a ``*.localhost`` URL on the loopback address, for resolvers that do
    not map those names themselves (glibc without nss-myhostname; browsers and curl do). The URL, and so the
    Host header, stays as given. Empty for any other URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host != LOCAL_HOST_PARENT and not host.endswith("." + LOCAL_HOST_PARENT):
        return {}
    default = 443 if parts.scheme in ("https", "wss") else 80
    return {"host": "127.0.0.1", "port": parts.port or default}


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
