"""The contract between the spec, the runtime and the renderers: names and defaults all three must agree on.

Dependency-free on purpose (standard library only): ``stackwright.spec`` and ``stackwright.render`` read it
without importing the runtime's web stack, and the runtime reads it without importing pydantic models.
"""

from __future__ import annotations


def env_key(name: str) -> str:
    """The environment-variable form of a spec name: ``read-db`` -> ``READ_DB``."""
    return name.upper().replace("-", "_")


def resource_env(resource: str, suffix: str = "URL") -> str:
    """Variable carrying a backing resource's connection URL (or another attribute): ``DB_URL``,
    ``VOTES_MAX_RECEIVE``."""
    return f"{env_key(resource)}_{suffix}"


def service_url_env(service: str) -> str:
    """Variable carrying the base URL of another service this one calls: ``RESULTS_SERVICE_URL``."""
    return f"{env_key(service)}_SERVICE_URL"


#: Seconds a service drains in-flight requests after SIGTERM (the pod's grace period counts it).
SHUTDOWN_GRACE_ENV = "SHUTDOWN_GRACE_SECONDS"

#: Seconds between the server's WebSocket pings. A ping is traffic, so a connection that carries no
#: messages still resets every idle timer on its path (the ALB's, below) and is never cut as idle.
WS_PING_INTERVAL_ENV = "WS_PING_INTERVAL_SECONDS"
DEFAULT_WS_PING_INTERVAL_S = 20.0

#: The ALB idle timeout the rendered Ingress sets (also the AWS default), in seconds. It is a setting of
#: the whole load balancer, not of a route (Ingresses sharing an ALB group must agree on it), so WebSocket
#: routes do not raise it: their connections stay open through the server's pings instead.
#: Source: AWS Elastic Load Balancing, "Application Load Balancers: connection idle timeout".
ALB_IDLE_TIMEOUT_S = 60

#: The edge's proof that it verified a request's bearer token (local runs only; see runtime.auth.EdgeProof),
#: and the variable carrying the per-run secret the runner gives the gateway and every service. Rendered
#: deployments set neither: there the ALB passes the token on unverified and each service verifies it.
EDGE_PROOF_HEADER = "x-edge-proof"
EDGE_PROOF_ENV = "EDGE_PROOF_SECRET"

#: The platform's endpoints of every runtime service: probes, Prometheus scrapes, FastAPI's API docs. They
#: are served on a port of their own (:data:`PLATFORM_PORT_ENV`), which no public Service, NLB or Ingress
#: ever exposes; the application port answers them 404 unless the spec publishes one by routing it.
PLATFORM_PATHS = frozenset({"/metrics", "/readyz", "/healthz", "/docs", "/docs/oauth2-redirect", "/redoc",
                            "/openapi.json"})

#: Variable carrying the platform port of a service process (unset: one port serves everything, as for an
#: app run by hand or in-process in tests), and the port rendered pods use (the same in every pod: it is
#: only ever reached on the pod's own address, by kubelet, the load balancers' health checks and Prometheus).
PLATFORM_PORT_ENV = "PLATFORM_PORT"
CONTAINER_PLATFORM_PORT = 9464

#: Variable listing (comma-separated) the platform paths a spec route publishes, which the application
#: port then serves too (e.g. ``/docs`` when a route routes it).
PUBLISHED_PATHS_ENV = "PUBLISHED_PLATFORM_PATHS"
