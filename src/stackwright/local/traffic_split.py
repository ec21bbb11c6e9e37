"""Which replica of a service the local gateway sends a request to: round robin over the stable replicas,
and, while a canary rehearsal (``stackwright rollout``) runs, a weighted share to the canary's replicas.

The split is what the rendered Argo Rollout asks of the ALB (``setWeight``: N% of the service's requests to
the canary target group). Locally it is exact and deterministic rather than random: request n goes to the
canary when ``floor(n * weight / 100)`` steps up, so any run of requests has the weight's share, and a short
rehearsal measures the share it set. The rehearsal sets and clears it on the gateway's local-only admin port
(see :func:`admin_routes`), so production's public edge has no such endpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Canary:
    """A canary's replicas (``http://host:port`` each) and its share of requests in percent (0..100)."""

    urls: list[str]
    weight: int
    _cycle: Iterator[str] = field(init=False, repr=False)
    _seen: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(self.urls)

    def takes_next(self) -> bool:
        """True if the next request goes to the canary (exactly ``weight`` % of requests, evenly spread)."""
        self._seen += 1
        return (self._seen * self.weight) // 100 > ((self._seen - 1) * self.weight) // 100


class TrafficSplit:
    """Upstream choice per service: ``pick(service)`` returns the origin URL of the next request."""

    def __init__(self, upstreams: dict[str, list[str]]) -> None:
        self.stable = {name: list(urls) for name, urls in upstreams.items()}
        self._cycles = {name: itertools.cycle(urls) for name, urls in upstreams.items()}
        self.canaries: dict[str, Canary] = {}

    def pick(self, service: str) -> str:
        """The next origin for ``service`` (raises KeyError for a service with no routes)."""
        canary = self.canaries.get(service)
        if canary is not None and canary.takes_next():
            return next(canary._cycle)
        return next(self._cycles[service])

    def set_canary(self, service: str, urls: list[str], weight: int) -> None:
        """Send ``weight`` % of ``service``'s requests to ``urls``; raises ValueError on bad input."""
        if service not in self.stable:
            raise ValueError(f"the gateway routes no requests to service {service!r}")
        if not urls or not all(isinstance(u, str) and u.startswith("http://") for u in urls):
            raise ValueError("urls must be a non-empty list of http://host:port origins")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError("weight must be an integer percentage from 0 to 100")
        current = self.canaries.get(service)
        if current is not None and current.urls == urls:
            current.weight = weight  # keep its position in the sequence: the share stays exact across steps
        else:
            self.canaries[service] = Canary(urls, weight)

    def clear_canary(self, service: str) -> bool:
        """All of ``service``'s requests back to the stable replicas; False if it had no canary."""
        return self.canaries.pop(service, None) is not None

    def describe(self) -> dict[str, Any]:
        """``{service: {"urls": [...], "weight": N}}`` of the canaries now set."""
        return {name: {"urls": c.urls, "weight": c.weight} for name, c in self.canaries.items()}


def admin_routes(split: TrafficSplit) -> list[Any]:
    """Starlette routes for the gateway's admin port: ``GET /canary`` (the canaries now set),
    ``PUT /canary/{service}`` with ``{"urls": [...], "weight": N}``, ``DELETE /canary/{service}``.
    Bad input answers 400 problem+json."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from ..runtime.problems import problem_response

    async def listing(_: Request) -> JSONResponse:
        return JSONResponse(split.describe())

    async def one(request: Request) -> Response:
        service = request.path_params["service"]
        if request.method == "DELETE":
            split.clear_canary(service)
            return JSONResponse(split.describe())
        try:
            body = await request.json()
            split.set_canary(service, body["urls"], body["weight"])
        except (ValueError, KeyError, TypeError) as exc:
            return problem_response(400, f"bad canary request: {exc}")
        return JSONResponse(split.describe())

    return [Route("/canary", listing, methods=["GET"]), Route("/canary/{service}", one, methods=["PUT", "DELETE"])]
