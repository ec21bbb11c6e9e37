"""Injected faults for canary rehearsals: a deliberately bad version of a service, made from a good one.

``stackwright rollout ... --inject SPEC`` starts the canary's processes with :data:`FAULT_ENV` set to
``SPEC``; nothing else sets it, and production manifests never do, so a normal process has no fault and
pays one ``None`` check per request. ``SPEC`` is one of:

* ``error-rate=R`` (0 < R <= 1): that share of user requests is answered 500 (problem+json) instead of being
  served, spread evenly (every 1/R-th request, not at random, so a short rehearsal sees exactly R);
* ``latency-ms=N``: every user request waits N milliseconds before it is served;
* ``crash``: the process exits with code :data:`CRASH_EXIT_CODE` before it serves anything (a version that
  crash-loops and never becomes ready).

Probes, scrapes and API docs (the platform's paths) are never touched: the faulty version still becomes
ready and is still scraped, as a real bad release would be. The fault acts inside the request metrics, so
the injected 500s and delays show in ``starlette_requests_total`` and the duration histogram, which is what
the canary analysis reads.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

#: The environment variable the rehearsal sets on canary processes (never set in production).
FAULT_ENV = "STACKWRIGHT_REHEARSAL_FAULT"
#: Exit code of a process started with ``crash``.
CRASH_EXIT_CODE = 70


class FaultSpecError(ValueError):
    """A fault specification that does not parse; the message says what is accepted."""


@dataclass
class Fault:
    """One injected fault; ``error_rate`` in (0, 1], ``latency_ms`` >= 0, ``crash`` exits at start."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    crash: bool = False
    _seen: int = 0

    def describe(self) -> str:
        """The spec text this fault was parsed from (``error-rate=0.05``, ``latency-ms=400``, ``crash``)."""
        if self.crash:
            return "crash"
        if self.error_rate:
            return f"error-rate={self.error_rate:g}"
        return f"latency-ms={self.latency_ms:g}"

    async def before_request(self) -> bool:
        """Apply the fault to one user request: wait for the injected latency; True if it must fail (500)."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if not self.error_rate:
            return False
        # Request n fails when floor(n * R) steps up: exactly R of any run of requests, evenly spread.
        self._seen += 1
        return math.floor(self._seen * self.error_rate) > math.floor((self._seen - 1) * self.error_rate)


def parse_fault(text: str) -> Fault:
    """Parse ``error-rate=R``, ``latency-ms=N`` or ``crash``; raises :class:`FaultSpecError`."""
    spec = text.strip()
    if spec == "crash":
        return Fault(crash=True)
    name, sep, value = spec.partition("=")
    try:
        number = float(value) if sep else math.nan
    except ValueError:
        number = math.nan
    if name == "error-rate" and 0 < number <= 1:
        return Fault(error_rate=number)
    if name == "latency-ms" and 0 < number <= 60_000:
        return Fault(latency_ms=number)
    raise FaultSpecError(f"unknown fault {text!r}: use error-rate=R (0 < R <= 1), latency-ms=N (1..60000) or crash")


def fault_from_env() -> Fault | None:
    """The fault the environment asks for (:data:`FAULT_ENV`), or None (always, outside rehearsals)."""
    text = os.environ.get(FAULT_ENV)
    return parse_fault(text) if text else None


class FaultMiddleware:
    """ASGI middleware applying ``fault`` to every HTTP request whose path is not in ``spared``."""

    def __init__(self, app: ASGIApp, fault: Fault, spared: frozenset[str]) -> None:
        self.app = app
        self.fault = fault
        self.spared = spared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.spared and await self.fault.before_request():
            from .problems import problem_response

            await problem_response(500, f"injected fault ({FAULT_ENV}={self.fault.describe()})")(scope, receive, send)
            return
        await self.app(scope, receive, send)
