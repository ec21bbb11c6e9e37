"""The typed model of a system.yaml: the single source of truth for local, render and plan.

Every section is strict (unknown keys are errors) so a typo never silently turns into a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

# The resource kinds' models live in their kind modules (stackwright.resources.<kind>); the union
# ``Resource`` comes from the registry, and the classes are re-exported here so
# ``from stackwright.spec.model import QueueResource`` keeps working.
from ..contract import CONTAINER_PLATFORM_PORT
from ..resources.bucket import BucketResource, LifecycleRule  # noqa: F401
from ..resources.postgres import Pool, PostgresResource  # noqa: F401
from ..resources.queue import QueueResource  # noqa: F401
from ..resources.redis import RedisKeys, RedisResource  # noqa: F401
from ..resources.registry import Resource
from ..resources.search import SearchResource  # noqa: F401
from ..resources.topic import TopicResource  # noqa: F401
from . import addresses
from .accelerators import AcceleratorType
from .quantities import bytes_size, cpu_millis, memory_mib, seconds
from .strict import NAME_RE, Name, Strict  # noqa: F401

# ---------------------------------------------------------------- services


class Replicas(Strict):
    min: int = Field(1, ge=0)
    max: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) is greater than replicas.max ({self.max})")
        return self


class ComputeResources(Strict):
    """Kubernetes requests/limits for one container. Memory limit defaults to the request."""

    cpu: str = "100m"
    memory: str = "128Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    gpu: int = Field(0, ge=0)

    @field_validator("cpu", "cpu_limit")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                cpu_millis(v)
            except ValueError:
                raise ValueError(f"not a CPU quantity: {v!r} (use e.g. 250m or 1)") from None
        return v

    @field_validator("memory", "memory_limit")
    @classmethod
    def _mem(cls, v: str | None) -> str | None:
        if v is not None:
            memory_mib(v)
        return v

    @property
    def cpu_m(self) -> int:
        return cpu_millis(self.cpu)

    @property
    def memory_mi(self) -> float:
        return memory_mib(self.memory)

    @property
    def effective_memory_limit(self) -> str:
        return self.memory_limit or self.memory


class Accelerator(Strict):
    """GPUs for each pod of a service (see :mod:`stackwright.spec.accelerators` for the pairing rules)."""

    type: AcceleratorType = Field(description="GPU model; the node pool's instance family must carry it "
                                              "(g4dn = T4, g5 = A10G, g6 = L4, g6e = L40S, p4d = A100, p5 = H100)")
    count: int = Field(1, ge=1, le=8, description="GPUs per pod: the nvidia.com/gpu limit")


class CustomMetric(Strict):
    """A Prometheus metric to scale on (a KEDA ``prometheus`` trigger): replicas = ceil(value / target)."""

    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
                      description="Prometheus metric name, e.g. stream_sessions_open")
    target: float = Field(gt=0, description="value of the query one replica should carry (KEDA threshold)")
    query: str | None = Field(
        None, description="PromQL giving the service's total; default: sum(<name>{namespace=\"<ns>\", "
                          "container=\"<service>\"}) over the series Prometheus scrapes from its pods")
    peak: float | None = Field(
        None, gt=0, description="the query's value at the SLO peak, all regions together (e.g. concurrent streams); "
                                "plan then sizes the service as ceil(peak x region share / target) replicas")


class Autoscale(Strict):
    """HPA settings: CPU/memory utilisation targets, queue depth for workers, or a Prometheus metric (KEDA)."""

    cpu_percent: int | None = Field(70, ge=1, le=100)
    memory_percent: int | None = Field(None, ge=1, le=100)
    queue: str | None = None
    target_queue_depth: int | None = Field(None, ge=1)
    metric: CustomMetric | None = Field(
        None, description="scale on a Prometheus metric (a KEDA ScaledObject with a prometheus trigger, "
                          "server from monitoring.prometheus_url)")

    @model_validator(mode="after")
    def _queue_pair(self) -> Autoscale:
        if (self.queue is None) != (self.target_queue_depth is None):
            raise ValueError("autoscale.queue and autoscale.target_queue_depth go together")
        if self.queue is not None and self.metric is not None:
            raise ValueError("autoscale: scale on a queue or on a metric, not both")
        return self

    @property
    def keda(self) -> bool:
        """Whether a KEDA ScaledObject (not an HPA) scales the service."""
        return self.queue is not None or self.metric is not None


class Route(Strict):
    """One path the edge routes to a service. ``{param}`` segments match one path segment."""

    path: str
    methods: list[Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]] | None = None
    auth: Literal["none", "required"] = "none"
    api_key_prefixes: list[str] = Field(
        default_factory=list,
        description="auth: required routes whose service also takes API keys of its own: a bearer credential "
                    "starting with one of these prefixes (`sk_`) is passed through to the service unverified, "
                    "and the service verifies it; every other credential is still verified as an identity "
                    "provider token at the edge")
    roles: list[str] = Field(default_factory=list)
    rate_limit: str | None = None
    websocket: bool = False
    max_connections: int | None = Field(
        None, ge=1, description="websocket routes: open sessions per replica; the edge refuses one more (403 "
                                "handshake, close 1013)")
    idle_timeout_s: int | None = Field(
        None, ge=1, le=86400,
        description="websocket routes: seconds without a message either way after which the session is closed "
                    "(1001); the application's timeout, not the ALB's (which stays 60 s, kept open by pings)")
    max_body: str | None = None
    host: str | None = Field(
        None, description="host label the route is limited to (`api`: api.<domain> in production, "
                          "api.<env>.<domain> elsewhere, api.localhost on the local gateway); unset: every name "
                          "pointing at the edge")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        # One or more DNS labels (RFC 1123), lower case: the edge puts the environment's domain after them.
        label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
        if v is not None and not re.fullmatch(rf"{label}(\.{label})*", v):
            raise ValueError(f"route host must be DNS labels in lower case, without the domain (e.g. api): {v!r}")
        return v

    @model_validator(mode="after")
    def _websocket_only(self) -> Route:
        for field in ("max_connections", "idle_timeout_s"):
            if getattr(self, field) is not None and not self.websocket:
                raise ValueError(f"route {self.path}: {field} applies to websocket: true routes only")
        return self

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"route path must start with '/': {v!r}")
        if not re.fullmatch(r"/[A-Za-z0-9_\-./{}]*", v):
            raise ValueError(f"route path has characters a path cannot hold: {v!r}")
        return v

    @field_validator("max_body")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None:
            bytes_size(v)
        return v

    @property
    def is_prefix(self) -> bool:
        """A route without parameters matches its path and everything below it."""
        return "{" not in self.path

    @property
    def literal_length(self) -> int:
        """Length of the fixed text; longer (more specific) routes win."""
        return len(re.sub(r"\{[^}]*\}", "", self.path))


class Probe(Strict):
    path: str
    initial_delay_s: int = Field(0, ge=0)
    period_s: int = Field(10, ge=1)
    timeout_s: int = Field(2, ge=1)
    failure_threshold: int = Field(3, ge=1)


def _liveness() -> Probe:
    return Probe(path="/healthz", period_s=10)


def _readiness() -> Probe:
    return Probe(path="/readyz", period_s=5)


class Probes(Strict):
    liveness: Probe = Field(default_factory=_liveness)
    readiness: Probe = Field(default_factory=_readiness)
    startup: Probe | None = None


class CanaryStep(Strict):
    weight: int = Field(ge=1, le=100)
    pause: str = "5m"

    @field_validator("pause")
    @classmethod
    def _dur(cls, v: str) -> str:
        seconds(v)
        return v


class CanaryAnalysis(Strict):
    """Rollback thresholds the rendered AnalysisTemplate and the local rehearsal both use."""

    max_error_rate: float = Field(0.01, gt=0, lt=1)
    max_p99_ms: int = Field(500, ge=1)
    max_success_rate_drop: float = Field(0.02, gt=0, lt=1)
    interval: str = "1m"
    failure_limit: int = Field(1, ge=0)
    min_requests: int = Field(50, ge=1, description="canary requests per window below which a check is inconclusive")


class Rollout(Strict):
    strategy: Literal["rolling", "canary"] = "rolling"
    steps: list[CanaryStep] = Field(default_factory=list)
    analysis: CanaryAnalysis | None = None

    @model_validator(mode="after")
    def _canary_needs_steps(self) -> Rollout:
        if self.strategy == "canary" and not self.steps:
            self.steps = [CanaryStep(weight=10, pause="5m"), CanaryStep(weight=50, pause="10m")]
        if self.strategy == "canary" and self.analysis is None:
            self.analysis = CanaryAnalysis()
        return self


class Shutdown(Strict):
    """How a pod leaves the load balancer when it stops; unset fields fall back to the system's
    ``shutdown`` and then to :mod:`stackwright.spec.shutdown`'s defaults (seconds, AWS range 0-3600)."""

    prestop_sleep_s: int | None = Field(None, ge=1, le=3600)
    drain_s: int | None = Field(None, ge=1, le=3600)
    deregistration_delay_s: int | None = Field(None, ge=0, le=3600)


class Service(Strict):
    """One deployable: an ASGI app run as its own process locally and its own Deployment on EKS."""

    description: str = ""
    kind: Literal["api", "worker", "web"] = "api"
    app: str = "app:app"
    path: str | None = None
    port: int = Field(8000, ge=1024, le=65535)
    replicas: Replicas = Field(default_factory=Replicas)
    resources: ComputeResources = Field(default_factory=ComputeResources)
    accelerator: Accelerator | None = Field(
        None, description="GPUs per pod; the service must run on a gpu: true node pool that carries this model")
    autoscale: Autoscale | None = None
    routes: list[Route] = Field(default_factory=list)
    uses: list[str] = Field(default_factory=list)
    calls: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    probes: Probes = Field(default_factory=Probes)
    rollout: Rollout = Field(default_factory=Rollout)
    node_pool: str | None = None
    expose: Literal["ingress", "load-balancer", "internal"] = "ingress"
    service_port: int = Field(80, ge=1, le=65535)
    graceful_shutdown_s: int = Field(30, ge=1)
    shutdown: Shutdown = Field(default_factory=Shutdown)

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if v == CONTAINER_PLATFORM_PORT:
            raise ValueError(f"port {v} is every pod's platform port (metrics, readiness, API docs); pick another")
        return v

    @field_validator("app")
    @classmethod
    def _app(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"app must be 'module:attribute', e.g. app:app (got {v!r})")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
                raise ValueError(f"env name {key!r} must be UPPER_SNAKE_CASE")
        return {k: str(val) for k, val in v.items()}


# ---------------------------------------------------------------- platform


class Region(Strict):
    name: str = Field(pattern=r"^[a-z]{2}-[a-z]+-\d$")
    role: Literal["primary", "secondary", "standby"] = "secondary"
    vpc_cidr: str = Field(pattern=r"^\d+\.\d+\.\d+\.\d+/\d+$")
    traffic_share: float | None = Field(None, gt=0, le=1)
    #: How the region runs outside a failover. ``active``: the spec's replicas; ``warm-standby``: one
    #: replica per service (at most the spec's minimum), autoscaling up to the spec's maximum when traffic
    #: fails over; ``pilot-light``: the same one replica, not autoscaled (promote by setting ``active``).
    #: Unset: ``warm-standby`` for a standby region, ``active`` otherwise (stackwright.deploy.placement).
    dr: Literal["active", "warm-standby", "pilot-light"] | None = None

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return addresses.vpc_cidr(v)

    @model_validator(mode="after")
    def _primary_is_active(self) -> Region:
        # The primary takes every write; a scaled-down primary is a capacity fault, not a DR mode.
        if self.role == "primary" and self.dr not in (None, "active"):
            raise ValueError(f"the primary region cannot be dr: {self.dr} (only a secondary or standby can)")
        return self


class Network(Strict):
    azs: int = Field(3, ge=1, le=6)
    layout: Literal["private", "public-only"] = "private"
    nat: Literal["per-az", "single", "none"] = "per-az"
    vpc_endpoints: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Network:
        if self.layout == "public-only" and self.nat != "none":
            raise ValueError("a public-only network has no private subnets, so set nat: none")
        if self.layout == "private" and self.nat == "none":
            raise ValueError("private subnets need a NAT (nat: per-az or single) or use layout: public-only")
        return self


class NodePool(Strict):
    name: Name
    instance_types: list[str] = Field(min_length=1)
    min: int = Field(1, ge=0)
    max: int = Field(3, ge=1)
    desired: int | None = None
    capacity: Literal["on-demand", "spot"] = "on-demand"
    gpu: bool = False
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sizes(self) -> NodePool:
        if self.min > self.max:
            raise ValueError(f"node pool {self.name}: min ({self.min}) > max ({self.max})")
        if self.desired is None:
            self.desired = self.min
        if not self.min <= self.desired <= self.max:
            raise ValueError(f"node pool {self.name}: desired ({self.desired}) is outside min..max")
        return self


#: Oldest Kubernetes the rendered pods run on: their preStop hook is the ``sleep`` action, enabled by
#: default from 1.30 (KEP-3960, beta in 1.30; alpha behind a feature gate in 1.29).
MIN_KUBERNETES_VERSION = (1, 30)


class Cluster(Strict):
    kubernetes_version: str = "1.33"
    node_pools: list[NodePool] = Field(min_length=1)

    @field_validator("kubernetes_version")
    @classmethod
    def _supported_version(cls, v: str) -> str:
        found = re.fullmatch(r"(\d+)\.(\d+)", v)
        minimum = ".".join(map(str, MIN_KUBERNETES_VERSION))
        if found is None:
            raise ValueError(f"not a Kubernetes minor version: {v!r} (use e.g. \"1.33\")")
        if (int(found[1]), int(found[2])) < MIN_KUBERNETES_VERSION:
            raise ValueError(f"Kubernetes {v} is not supported; the minimum is {minimum} (pods stop with the "
                             "preStop sleep action, which older versions do not enable)")
        return v


class Identity(Strict):
    """Who issues tokens in production; locally the dev IdP stands in with the same issuer/audience."""

    provider: Literal["auth0", "cognito", "dev"] = "dev"
    issuer: str
    audience: str
    algorithms: list[Literal["RS256", "RS384", "RS512", "ES256", "ES384"]] = Field(default_factory=lambda: ["RS256"])
    roles_claim: str = "roles"
    local_mount: str = "/auth"
    #: Roles a service checks in its own code (not on a route's ``roles:``), e.g. a reviewer who may release a
    #: held payment; with the routes' roles they are what ``stackwright token --role`` can grant.
    roles: list[str] = Field(default_factory=list)


class RateLimit(Strict):
    requests_per_second: float = Field(gt=0)
    burst: int = Field(ge=1)
    key: Literal["sub", "ip"] = "sub"


class Waf(Strict):
    rate_limit_per_5min: int = Field(2000, ge=100)
    managed_rules: bool = True


class ApiGateway(Strict):
    rps_limit: int = Field(10000, ge=1)


class Edge(Strict):
    domain: str = "example.com"
    identity: Identity | None = None
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    default_rate_limit: str | None = None
    max_body: str = "1MiB"
    waf: Waf | None = Field(default_factory=Waf)
    api_gateway: ApiGateway | None = None
    cdn: bool = False
    health_check_interval_s: Literal[10, 30] = 30
    health_check_failure_threshold: int = Field(3, ge=1, le=10)
    dns_ttl_s: int = Field(60, ge=0)

    @field_validator("max_body")
    @classmethod
    def _size(cls, v: str) -> str:
        bytes_size(v)
        return v


class Slo(Strict):
    peak_rps: float = Field(gt=0)
    latency_p99_ms: int = Field(500, ge=1)
    latency_p95_ms: int | None = Field(None, ge=1, description="a p95 objective as well, when the design states one")
    error_rate_percent: float | None = Field(None, gt=0, lt=100,
                                             description="share of requests that may fail (5xx), in percent")
    availability: float = Field(99.9, gt=90, lt=100)
    rto_minutes: float = Field(15, gt=0)
    rpo_seconds: float = Field(60, ge=0)
    monthly_budget_usd: float | None = Field(None, gt=0)
    peak_mix: dict[str, float] = Field(
        default_factory=dict,
        description="share of peak_rps each routed service takes (plan sizes unlisted ones for the full peak)")

    @field_validator("peak_mix")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        for name, share in v.items():
            if not 0 < share <= 1:
                raise ValueError(f"peak_mix.{name} must be a share in (0, 1] (got {share})")
        return v


class Usage(Strict):
    """Monthly usage for the whole system that pricing needs and the rest of the spec cannot tell.

    Every field is optional: ``stackwright plan`` states the assumption it uses for an unset one.
    Traffic is split over regions by ``traffic_share``.
    """

    requests_millions: float | None = Field(None, ge=0, description="edge requests per month")
    egress_gb: float | None = Field(None, ge=0, description="internet egress from the regions")
    cdn_egress_gb: float | None = Field(None, ge=0, description="egress served by the CDN")
    load_balancer_gb: float | None = Field(None, ge=0, description="bytes processed by load balancers")
    nat_gb: float | None = Field(None, ge=0, description="bytes through NAT gateways")
    inter_az_gb: float | None = Field(None, ge=0, description="traffic between AZs (each direction)")
    cross_region_gb: float | None = Field(None, ge=0, description="replication and forwarded writes")
    log_ingest_gb: float | None = Field(None, ge=0, description="CloudWatch Logs ingested")
    custom_metrics: int | None = Field(None, ge=0, description="CloudWatch custom metrics")
    image_storage_gb: float | None = Field(None, ge=0, description="ECR image storage")


class ReferenceCostLine(Strict):
    """One line of a reference estimate's cost table, as that reference states it."""

    item: str
    stated: float = Field(description="monthly USD as the reference states it")
    factors: list[float] = Field(default_factory=list, description="the reference's own arithmetic for the line "
                                                                   "(multiplied: count, unit price, hours, ...)")


class ReferenceCostSection(Strict):
    """One section of a reference estimate's cost table (e.g. "Aurora"): its stated total and its lines."""

    name: str
    stated: float = Field(description="the section's total as the reference states it, monthly USD")
    lines: list[ReferenceCostLine] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list, description="plan cost categories pricing the same "
                                                                    "things (cluster, compute, database, ...)")


class ReferenceCost(Strict):
    """A cost estimate the design started from (e.g. the seed's), which ``stackwright plan`` reconciles: its
    lines' arithmetic, its sections' sums, its total, and this plan's figures for the same categories."""

    source: str = Field(description="where the estimate comes from, e.g. seed 001's Cost Breakdown")
    stated_total: float = Field(description="the estimate's total as stated, monthly USD")
    sections: list[ReferenceCostSection] = Field(min_length=1)


class Monitoring(Strict):
    prometheus: bool = True
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        description="in-cluster Prometheus that KEDA queries for autoscale.metric (default: the Prometheus "
                    "Operator's prometheus-operated Service in namespace monitoring)")
    grafana: bool = True
    log_retention_days: int = Field(30, ge=1)


class System(Strict):
    """A whole system: what runs, what it uses, where it is deployed and what it promises."""

    name: Name
    description: str = ""
    seed: str | None = None
    extras: list[Name] = Field(
        default_factory=list,
        description="stackwright extras (pyproject optional dependencies) the services import, e.g. [files]; "
                    "up, demo, bench and chaos check they are installed before starting anything")
    environments: list[Name] = Field(default_factory=lambda: ["prod"])
    regions: list[Region] = Field(min_length=1)
    network: Network = Field(default_factory=Network)
    cluster: Cluster
    edge: Edge = Field(default_factory=Edge)
    resources: dict[str, Resource] = Field(default_factory=dict)
    services: dict[str, Service] = Field(min_length=1)
    slo: Slo
    monitoring: Monitoring = Field(default_factory=Monitoring)
    usage: Usage = Field(default_factory=Usage)
    reference_cost: ReferenceCost | None = Field(
        None, description="a cost estimate to reconcile (e.g. the seed's): plan checks its sums and compares")
    shutdown: Shutdown = Field(default_factory=Shutdown)

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The system.yaml this model was loaded from (None when built in code)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Folder that service paths and migrations are relative to."""
        return self._source.parent if self._source else Path.cwd()

    @property
    def primary_region(self) -> Region:
        return next(r for r in self.regions if r.role == "primary")

    def service_dir(self, name: str) -> Path:
        """Where a service's code lives (``services/<name>`` unless the spec says otherwise)."""
        svc = self.services[name]
        return self.base_dir / (svc.path or f"services/{name}")

    def resources_of(self, kind: str) -> dict[str, Resource]:
        return {n: r for n, r in self.resources.items() if r.kind == kind}
