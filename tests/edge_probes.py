"""Probing an edge as an outsider would: one probe set per system, sent raw to a running local gateway.

The probe set (:func:`probe_set`) holds every spec route with each of its methods, HEAD and a method it does
not take, the paths below prefix routes, the runtime's internal endpoints, the gateway's former metrics
path, traversal, percent-encoding, case and slash variants of them, and unknown paths; with routes limited
to a host (``host:``), each of them on every host the spec names and on none. :func:`send` sends a
probe byte for byte (http.client keeps the path as written, where httpx would normalise it) and
:func:`edge_outcome` tells from the gateway's own request counter (on its local-only admin port) whether
the gateway forwarded it, and to which service, or answered it itself.
"""

from __future__ import annotations

import http.client
import re
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from stackwright.deploy.names import route_host
from stackwright.spec import System

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

#: Endpoints every runtime service serves for the platform, and the gateway's own former public paths.
INTERNAL = ("/metrics", "/readyz", "/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
            "/_edge/metrics", "/_edge/healthz")
#: Ways to spell an internal path that a naive matcher might not recognise (or a server might normalise).
VARIANTS = ("/%2e%2e/metrics", "/%2E%2E/metrics", "//metrics", "/METRICS", "/metrics/", "/%6detrics",
            "/%6Detrics", "/./metrics", "/x/../metrics", "/%2e%2e%2fmetrics", "/docs/", "/Docs", "/healthz/",
            "//healthz", "/readyz/", "/%72eadyz", "/openapi.json/", "/metrics;x", "/metrics%00")
UNKNOWN = ("/no/such/path", "/favicon.ico", "/robots.txt", "/.env", "/admin", "/%2e%2e/%2e%2e/etc/passwd")


@dataclass(frozen=True)
class Probe:
    """One request: method, raw path (as sent on the request line, without a query string) and the spec's
    host label it is sent to (None: a name no route is limited to)."""

    method: str
    path: str
    host: str | None = None

    def host_name(self, system: System, environment: str | None) -> str | None:
        """The Host header of this probe in ``environment`` (None: the local gateway's names)."""
        return route_host(system, environment, self.host) if self.host else None


def probe_set(system: System) -> list[Probe]:
    """Every probe for ``system`` (deduplicated, in a stable order)."""
    probes: dict[Probe, None] = {}
    labels = sorted({r.host for s in system.services.values() for r in s.routes if r.host})
    hosts: list[str | None] = [None, *labels]
    for svc in system.services.values():
        if svc.expose == "internal":
            continue
        for route in svc.routes:
            for other in hosts:  # a host-limited route is not reachable on the other names
                if other != route.host:
                    for method in ("GET", "POST"):
                        probes[Probe(method, re.sub(r"\{[^}]*\}", "p1", route.path), other)] = None
            concrete = re.sub(r"\{[^}]*\}", "p1", route.path)
            paths = [concrete]
            if "{" not in route.path:  # a prefix route: below it, and with a trailing slash
                base = concrete.rstrip("/")
                paths += [f"{base}/x", f"{base}/", f"{base}x" if base else "/x"]
            else:  # a parameter that spans segments, and an empty one
                paths += [re.sub(r"\{[^}]*\}", "a/b", route.path), re.sub(r"\{[^}]*\}", "", route.path)]
            for method in METHODS:  # the route's own path with every method
                probes[Probe(method, paths[0], route.host)] = None
            for path in paths[1:]:
                for method in ("GET", "HEAD", "POST", "DELETE"):
                    probes[Probe(method, path, route.host)] = None
    for host in hosts:
        for path in (*INTERNAL, *VARIANTS, *UNKNOWN):
            for method in ("GET", "HEAD", "POST"):
                probes[Probe(method, path, host)] = None
    return list(probes)


def send(base: str, probe: Probe, headers: dict[str, str], timeout: float = 10.0) -> int:
    """Send ``probe`` to the edge at ``base`` with the raw path; return the status."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)
    try:
        # A Host in ``headers`` replaces http.client's own (two Host headers would leave the choice to the edge).
        conn.putrequest(probe.method, probe.path, skip_accept_encoding=True,
                        skip_host=any(name.lower() == "host" for name in headers))
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("content-length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def edge_counts(admin: str) -> dict[tuple[str, str, str], float]:
    """The gateway's request counter, (method, path label, status) -> count, read from its admin port."""
    counts: dict[tuple[str, str, str], float] = {}
    with urllib.request.urlopen(f"{admin}/metrics", timeout=10) as resp:  # no TLS set-up per call, as httpx's
        text = resp.read().decode()
    # Only the counter's lines are parsed (the histogram's buckets make the whole text slow to parse).
    lines = "\n".join(line for line in text.splitlines() if line.startswith("starlette_requests_total{"))
    for family in text_string_to_metric_families(lines):
        for sample in family.samples:
            if sample.name == "starlette_requests_total" and sample.labels.get("app_name") == "edge":
                key = (sample.labels["method"], sample.labels["path"], sample.labels["status_code"])
                counts[key] = sample.value
    return counts


def owner(system: System, pattern: str, method: str) -> str:
    """The service whose spec route ``pattern`` takes ``method`` (HEAD counts as GET)."""
    wanted = "GET" if method == "HEAD" else method
    owners = [name for name, svc in system.services.items() for r in svc.routes
              if r.path == pattern and (r.methods is None or wanted in r.methods or method in r.methods)]
    assert len(owners) == 1, f"{method} {pattern}: owners {owners}"
    return owners[0]


def edge_outcome(system: System, before: dict[tuple[str, str, str], float],
                 after: dict[tuple[str, str, str], float], probe: Probe, status: int,
                 local_only: tuple[str, ...] = ()) -> str:
    """``-> service`` when the gateway forwarded the probe (its counter labels it with a spec route), else
    the status the gateway answered itself. Refusals by the edge's auth or rate limits are errors: the
    probes carry a token and a client address of their own so that none happens. Requests to ``local_only``
    paths are not the probe's (the gateway fetches its dev IdP's keys through itself)."""
    grown = [k for k, v in after.items() if v > before.get(k, 0) and not k[1].startswith(local_only)]
    assert len(grown) == 1, f"{probe}: the edge counted {grown}"
    method, label, counted = grown[0]
    assert (method, int(counted)) == (probe.method, status), (probe, grown)
    if label == "__unmatched__":
        return str(status)
    assert status not in (401, 403, 429), f"{probe}: refused by the edge's own checks ({status})"
    return f"-> {owner(system, label, method)}"
