"""Whether a service reads or writes the stores it uses, derived from the spec rather than assumed.

A service whose routes all use safe methods (GET, HEAD, OPTIONS) only reads: it can be served by a read
replica. A worker, a queue consumer, a service with any other method (or a route open to every method)
and a service without routes (reached by ``calls``, so its callers' intent is unknown) may write, and
writes go to the primary.
"""

from __future__ import annotations

from typing import Literal

from ..resources import kind_of
from ..spec import System

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Access = Literal["read", "write"]


def _consumes_queue(system: System, service: str) -> bool:
    svc = system.services[service]
    resources = system.resources
    return any(service in kind_of(resources[u]).consumed_by(system, u, resources[u]) for u in svc.uses)


def access(system: System, service: str) -> Access:
    """``read`` when every route of ``service`` uses safe methods, else ``write`` (see the module doc)."""
    svc = system.services[service]
    if svc.kind == "worker" or _consumes_queue(system, service) or not svc.routes:
        return "write"
    for route in svc.routes:
        if route.methods is None or not set(route.methods) <= SAFE_METHODS:
            return "write"
    return "read"
