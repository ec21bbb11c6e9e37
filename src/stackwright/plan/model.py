"""Result dataclasses of a plan. Everything the document shows is one of these, so md and json agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .reference import ReferenceReport

Severity = Literal["high", "medium", "low"]
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class Finding:
    """One problem with the spec, with where it is and how to fix it."""

    severity: Severity
    area: str
    message: str
    where: str = ""
    hint: str = ""


# ---------------------------------------------------------------- capacity


@dataclass(frozen=True)
class Throughput:
    """What one replica of a service can serve, measured or estimated, and why we believe it."""

    rps_per_replica: float
    source: Literal["measured", "estimate"]
    basis: str
    p99_ms: float | None = None
    #: Date of the measurement this figure comes from (None: an estimate).
    measured_at: str | None = None
    #: What the rate counts: ``rps`` (requests/s) for a service, ``msg/s`` (messages drained) for a worker, or
    #: the name of the metric a service is scaled on (``stt_streams_active``: streams open at once).
    unit: str = "rps"


@dataclass(frozen=True)
class ServiceCapacity:
    """Replicas one service needs in one region at the SLO peak, against its replica range."""

    region: str
    service: str
    kind: str
    demand_rps: float
    demand_basis: str
    throughput: Throughput
    target_utilisation: float
    replicas_needed: int
    replicas_min: int
    replicas_max: int

    @property
    def replicas_at_peak(self) -> int:
        """Replicas the autoscaler will actually run at the peak (capped by replicas.max)."""
        return min(self.replicas_needed, self.replicas_max)

    @property
    def short_by(self) -> int:
        """Replicas missing at the peak (0 when replicas.max is enough)."""
        return max(0, self.replicas_needed - self.replicas_max)


@dataclass(frozen=True)
class PoolCapacity:
    """Nodes one node group needs in one region, from pod requests against per-node allocatable."""

    region: str
    pool: str
    instance_type: str
    nodes_min: int
    nodes_max: int
    nodes_desired: int
    usable_cpu_m: int
    usable_memory_mib: int
    usable_pods: int
    nodes_for_min_replicas: int
    nodes_at_peak: int
    nodes_for_uncapped_peak: int
    nodes_for_max_replicas: int
    cpu_at_peak_m: int
    memory_at_peak_mib: int
    pods_at_peak: int

    @property
    def baseline_nodes(self) -> int:
        """Nodes running outside the peak: the desired size, or more if min replicas do not fit."""
        return max(self.nodes_desired, self.nodes_for_min_replicas)


@dataclass(frozen=True)
class LimitCheck:
    """A fronting or backing component's limit against the demand it sees at the regional peak."""

    region: str
    component: str
    limit: float | None
    unit: str
    demand: float
    basis: str
    assessed: bool = True

    @property
    def utilisation(self) -> float | None:
        """Demand as a share of the limit (None for unlimited, or when the demand is not estimated)."""
        return None if not self.limit or not self.assessed else self.demand / self.limit


@dataclass(frozen=True)
class LegendRow:
    """One row of the regional capacity legend (seed 000 style): component -> text per region."""

    component: str
    cells: tuple[tuple[str, str], ...]


@dataclass
class CapacityReport:
    """Capacity against the SLO peak for every region."""

    peak_rps: float
    region_peaks: dict[str, float]
    headroom: str
    services: list[ServiceCapacity]
    pools: list[PoolCapacity]
    limits: list[LimitCheck]
    legend: list[LegendRow]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- cost


@dataclass(frozen=True)
class CostLine:
    """One priced item: quantity x unit price = monthly USD (rounded to cents)."""

    category: str
    item: str
    region: str
    quantity: float
    unit: str
    unit_price: float
    monthly_usd: Decimal
    price_key: str
    discount_class: str | None = None
    assumption: str = ""
    spot_ok: bool = False


@dataclass(frozen=True)
class CostScenario:
    """The same lines under one purchase option; ``total_usd`` is the sum of ``lines``."""

    name: str
    label: str
    lines: tuple[CostLine, ...]

    @property
    def total_usd(self) -> Decimal:
        """Sum of the scenario's lines."""
        return sum((line.monthly_usd for line in self.lines), Decimal("0.00"))


@dataclass
class CostReport:
    """Monthly cost of one environment, every line item, and purchase-option scenarios."""

    environment: str
    price_table: str
    as_of: str
    basis: str
    source: str
    lines: list[CostLine]
    scenarios: list[CostScenario]
    assumptions: list[str]
    budget_usd: float | None = None

    @property
    def total_usd(self) -> Decimal:
        """Sum of all lines (the as-specified scenario)."""
        return sum((line.monthly_usd for line in self.lines), Decimal("0.00"))

    def subtotal(self, *, category: str | None = None, region: str | None = None) -> Decimal:
        """Sum of the lines of one category and/or region."""
        return sum((ln.monthly_usd for ln in self.lines
                    if (category is None or ln.category == category) and (region is None or ln.region == region)),
                   Decimal("0.00"))


# ---------------------------------------------------------------- failure


@dataclass(frozen=True)
class StoreRecovery:
    """How one data store recovers: replication mode, failover time and data loss, against the SLO."""

    store: str
    kind: str
    engine: str
    replication: str
    failover: str
    rto_s_typical: float | None
    rto_s_worst: float | None
    rpo_s: float | None
    rpo_text: str
    region_loss: str
    region_rto_s: tuple[float, float] | None = None
    region_rpo_s: float | None = None


@dataclass(frozen=True)
class FailureScenario:
    """What happens when one thing fails."""

    event: str
    impact: str
    detection: str
    recovery: str
    data_loss: str


@dataclass(frozen=True)
class SpreadRow:
    """AZ spread and disruption budget of one service."""

    service: str
    replicas_min: int
    azs: int
    azs_covered_at_min: int
    pdb: str
    drain_ok: bool
    capacity_after_az_loss: str


@dataclass
class FailureReport:
    """Single points of failure, AZ spread, per-store RTO/RPO and failure scenarios."""

    detection_s: float
    detection_formula: str
    spofs: list[str]
    spread: list[SpreadRow]
    stores: list[StoreRecovery]
    scenarios: list[FailureScenario]
    slo_rto_s: float
    slo_rpo_s: float
    #: The last recorded ``stackwright drill region-failover`` result (bench/drills/<system>-region-failover.json)
    measured: dict[str, object] | None = None


# ---------------------------------------------------------------- document parts


@dataclass(frozen=True)
class K8sObject:
    """One Kubernetes object the deployment contains, with its purpose."""

    kind: str
    name: str
    purpose: str


@dataclass(frozen=True)
class Diagram:
    """A Mermaid diagram (source) and, when it could be rendered, the SVG file name."""

    name: str
    title: str
    source: str
    svg: str | None = None


@dataclass(frozen=True)
class SubnetRow:
    """One subnet of one region's VPC layout."""

    region: str
    az: str
    tier: str
    cidr: str
    usable: int


@dataclass
class Plan:
    """Everything ``stackwright plan`` computed for one system and environment."""

    system: str
    description: str
    seed: str | None
    environment: str
    regions: list[str]
    diagrams: list[Diagram]
    k8s_objects: list[K8sObject]
    k8s_source: str
    capacity: CapacityReport
    cost: CostReport
    failure: FailureReport
    findings: list[Finding]
    subnets: list[SubnetRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The spec's service level objectives as (objective, target) rows, in the order a design document lists them.
    slos: list[tuple[str, str]] = field(default_factory=list)
    #: The spec's reference_cost reconciled (:mod:`.reference`), or None.
    reference: ReferenceReport | None = None

    def count(self, severity: Severity) -> int:
        """How many findings have this severity."""
        return sum(1 for f in self.findings if f.severity == severity)
