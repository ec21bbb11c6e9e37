"""The interface every resource kind implements, and the small contexts its hooks receive.

A kind is one module under :mod:`stackwright.resources` holding its spec model and a
:class:`ResourceKind` subclass; the rest of stackwright asks the registry
(:func:`stackwright.resources.kind_of`) instead of switching on ``res.kind``. Every hook has a
default that means "this kind has nothing to say here", so a new kind overrides only what it has.

Hooks take plain values and small contexts rather than importing ``plan``/``render``/``local``:
importing a kind module must stay as cheap as importing the spec (no aws_cdk, no asyncpg), so
anything heavy a hook needs is imported inside the hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from ..plan.model import FailureScenario, Finding, LimitCheck, StoreRecovery
    from ..spec.model import System
    from ..spec.strict import Strict


class Fail(Protocol):
    """Builds the located SpecError a :meth:`ResourceKind.check` raises (``stackwright.spec.load``)."""

    def __call__(self, message: str, loc: tuple[Any, ...], hint: str | None = None) -> Exception:
        """The error for ``message`` at YAML path ``loc``."""


class CostSink(Protocol):
    """Where a kind's monthly cost lines go (``stackwright.plan.cost``'s per-region collector)."""

    def add(self, category: str, item: str, key: str, quantity: float, unit: str, *, discount: str | None = None,
            factor: float = 1.0, assumption: str = "", spot_ok: bool = False) -> None:
        """Price ``quantity`` (in ``unit``) of price-table ``key`` and append the line."""


class CostContext(Protocol):
    """What a kind's cost hook knows about the region being priced."""

    system: System
    out: CostSink
    region: str  #: the region being priced
    is_primary: bool
    share: float  #: this region's share of the system's traffic, 0..1
    hours: float  #: hours in the priced month
    assumptions: list[str]  #: plan-wide assumptions; a hook appends the ones it makes


class LocalContext(Protocol):
    """What a kind's local provisioning hook gets from ``stackwright up``."""

    system: System
    state_dir: Any  #: pathlib.Path of ``.stackwright/<system>/``
    backing: Mapping[str, Mapping[str, Any]]  #: embedded servers started: ``{"postgres": {"url": ...}}``

    def report(self, line: str) -> None:
        """Print one progress line."""


class ResourceKind:
    """Everything stackwright does with one kind of backing resource.

    Subclasses set the class attributes and override the hooks that apply; ``res`` is always an
    instance of :attr:`model`, ``name`` the resource's key under ``resources:``.
    """

    #: The ``kind:`` value in system.yaml.
    kind: ClassVar[str]
    #: The pydantic model of one resource of this kind (a :class:`~stackwright.spec.strict.Strict`).
    model: ClassVar[type[Strict]]

    # ---- local run
    #: Embedded servers ``stackwright up`` must start for this kind ("postgres", "redis").
    local_backing: ClassVar[frozenset[str]] = frozenset()
    #: Whether every region of ``up --regions`` uses the primary's local store (the kind replicates its data
    #: to every region on AWS, e.g. secrets), instead of provisioning its own.
    local_shared_across_regions: ClassVar[bool] = False

    async def provision_local(self, name: str, res: Any, ctx: LocalContext) -> str | None:
        """Create the local store (database, folder, ...) and return its ``<NAME>_URL``."""
        return None

    def local_name(self, system: System, name: str) -> str | None:
        """Real name of the resource locally when services need it besides the URL (queues)."""
        return None

    #: Locally a queue with a visibility timeout and a dead-letter queue: ``stackwright dlq`` lists it,
    #: ``up --visibility-timeout`` and the fault drills set its timeout.
    dead_letters: ClassVar[bool] = False

    def image_migrations(self, res: Any) -> str | None:
        """Folder (relative to system.yaml) of migrations a user's image carries, or None."""
        return None

    def migrated_at_deploy(self, res: Any) -> bool:
        """Whether a deploy runs a migration Job for the resource (with its first user's image and secret)."""
        return False

    # ---- validation
    def check(self, system: System, name: str, res: Any, fail: Fail) -> None:
        """Cross-checks against the rest of the spec that the model alone cannot make (a subscriber
        that is not a service); raise ``fail(message, loc, hint)``, whose ``loc`` is a YAML path
        (``("resources", name, "subscribers", 0)``) so the error carries the file:line."""

    # ---- wiring (both local and EKS)
    def env(self, name: str, res: Any, *, real_name: str | None) -> dict[str, str]:
        """Environment variables besides ``<NAME>_URL`` a service using the resource gets.

        ``real_name`` is what :meth:`local_name` / :meth:`eks_name` returned where it runs.
        Keys are full variable names (``VOTES_QUEUE``)."""
        return {}

    def service_env(self, system: System, service: str, name: str, res: Any, *,
                    real_name: str | None) -> dict[str, str]:
        """Variables that depend on which service uses the resource (a topic subscriber's consumer
        group); added after :meth:`env`."""
        return {}

    # ---- placement
    def regional(self, res: Any) -> bool:
        """Whether every region has its own copy (else it lives in the primary region only)."""
        return False

    # ---- secrets
    #: ``<NAME>_URL`` carries credentials, so on EKS it comes from Secrets Manager (an ExternalSecret),
    #: not the ConfigMap.
    credential_url: ClassVar[bool] = False
    #: plan counts one Secrets Manager secret per resource of this kind and region (cost, k8s objects).
    plan_secret: ClassVar[bool] = False

    def eks_secret(self, system: System, environment: str, name: str, res: Any,
                   service: str) -> tuple[str, str] | None:
        """(Secrets Manager secret name, JSON property) holding ``<NAME>_URL`` for ``service`` on EKS; None:
        the service's own settings secret, property ``<name>_url``."""
        return None

    def secret_props(self, name: str, res: Any, *, primary_region: bool) -> dict[str, str]:
        """Extra secret variables on EKS: ``suffix -> JSON property`` of the resource's secret
        (``READ_URL -> read_url``); only for :attr:`credential_url` kinds."""
        return {}

    # ---- Kubernetes
    def eks_url(self, system: System, environment: str, name: str, res: Any, *, region: str,
                hosted: str) -> str | None:
        """Plain (non-secret) ``<NAME>_URL`` on EKS in ``region``; ``hosted`` is where its copy lives."""
        return None

    def eks_name(self, system: System, environment: str, name: str, res: Any) -> str | None:
        """Real AWS name services need besides the URL (the SQS queue name)."""
        return None

    #: TCP port of a data store inside the VPC that NetworkPolicies open (None: not a VPC store).
    vpc_port: ClassVar[int | None] = None
    #: Secondary regions also reach the primary region's copy (writes to the primary database).
    writes_to_primary: ClassVar[bool] = False
    #: Reached through an AWS HTTPS API: True when an interface VPC endpoint serves it, False when it
    #: goes out on 443; None when it is not an AWS API.
    aws_api: ClassVar[bool | None] = None

    # ---- AWS CDK
    #: ``"package.module:function"`` that provisions one resource in the regional stacks that host it
    #: (``fn(stack, name, res) -> None``), and ``cdk_grant`` giving a service's role access
    #: (``fn(stack, role, service, name, res, secrets) -> None``; ``secrets`` is the list of secret
    #: names the role may read). Imported on use only, so aws_cdk is never loaded by importing the
    #: kind. ``stack`` is render/aws/stacks.py's RegionalStack: a hook reads its ``plan``, ``keys``,
    #: ``network``, ``cluster``, ``replica_regions``, ``primary_stack`` and records the constructs it makes
    #: in the stack's per-kind maps (``databases``, ``caches``, ``queues``, ``topics``, ``buckets``,
    #: ``search``) that the backup plan, bucket notifications and outputs read. None: nothing to create.
    cdk_provision: ClassVar[str | None] = None
    cdk_grant: ClassVar[str | None] = None
    #: Call :attr:`cdk_provision` in every regional stack, also where the resource has no copy (a region
    #: without the database still gets its services' login secrets pointing at the primary).
    cdk_every_region: ClassVar[bool] = False
    #: ``"package.module:function"`` run per resource in every region's foundation stack, after its keys,
    #: access-log bucket and backup vault (``fn(stack, name, res) -> None``): key policy grants to AWS
    #: services and DR replicas that other regions' stacks refer to.
    cdk_foundation: ClassVar[str | None] = None

    def backup_retention_days(self, res: Any) -> int | None:
        """Days AWS Backup keeps this resource's recovery points; the regional backup plan keeps the longest
        (7 when no resource says)."""
        return None

    # ---- plan
    def cost(self, name: str, res: Any, ctx: CostContext) -> None:
        """Add this resource's monthly cost lines for one region to ``ctx.out``."""

    #: Short AWS product name in diagrams ("SQS", "S3").
    product: ClassVar[str] = ""

    def sequence_label(self, name: str, res: Any, *, detailed: bool) -> str:
        """Participant label in sequence diagrams (``detailed``: the service's own resources)."""
        return f"{self.product} {name}"

    #: What a queue consumer does to this resource in a sequence diagram ({primary}: primary region).
    consumer_verb: ClassVar[str] = "request"
    #: What a routed service's request does to it in a sequence diagram.
    request_verb: ClassVar[str] = "request"

    def shared_node(self, name: str, res: Any) -> tuple[str, str, str] | None:
        """A node in the "Shared services" box of the deployment diagram: (node id prefix, label,
        shape "box" | "db"), or None when the resource is drawn per region."""
        return None

    def region_node(self, name: str, res: Any, *, region: str, primary: str) -> tuple[str, str, str] | None:
        """The resource's node inside one region of the deployment diagram: (where, label, shape) with
        where ``"data"`` (in the data subnets) or ``"regional"`` (a regional AWS service beside the VPC)
        and shape ``"box"`` | ``"db"``; None when ``region`` holds no copy of it."""
        return None

    def diagram_links(self, system: System, service: str, name: str, res: Any, *, region: str, primary: str,
                      workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        """Deployment-diagram edges between ``service``'s workload in ``region`` and the resource, as
        Mermaid link statements (``"W --> D"``, no indent). Node ids: ``workload`` the service's,
        ``local`` / ``prim`` the resource's node in this / the primary region, ``shared`` its node in
        "Shared services" (None when :meth:`shared_node` has none)."""
        return []

    def region_links(self, name: str, res: Any, *, region: str, primary: str, local: str,
                     prim: str) -> list[str]:
        """Deployment-diagram edges of the resource itself in ``region`` (replication from the primary)."""
        return []

    def consumed_by(self, system: System, name: str, res: Any) -> list[str]:
        """Services that consume messages from the resource asynchronously (a queue's workers), sorted;
        sequence diagrams follow a message to them and capacity spreads the message rate over them."""
        return []

    def sequence_request(self, system: System, service: str, name: str, res: Any, *, primary: str) -> str:
        """Message text of a routed service's request to the resource in its sequence diagram."""
        return self.request_verb

    def sequence_ack(self, system: System, name: str, res: Any) -> str:
        """Message text of a consumer finishing a message of :meth:`consumed_by` (a queue's delete)."""
        return "ack"

    # ---- plan: failure analysis (``stackwright.plan.failure``; build plan objects inside the hook)
    def spofs(self, name: str, res: Any) -> list[tuple[str, str, str, str]]:
        """Single points of failure of the resource: (severity "high" | "medium" | "low", text, spec path
        such as ``resources.<name>.instances``, hint)."""
        return []

    def recovery(self, system: System, name: str, res: Any, *, detect_s: float) -> StoreRecovery | None:
        """The resource's row in the data-store recovery table (replication, failover, RTO in seconds,
        RPO); ``detect_s`` is how long clients take to leave a failed region. None: not a data store."""
        return None

    def recovery_findings(self, system: System, name: str, res: Any, store: StoreRecovery) -> list[Finding]:
        """Findings from the resource's :meth:`recovery` row against the SLO (``slo.rto_minutes``,
        ``slo.rpo_seconds``)."""
        return []

    def failure_scenarios(self, system: System, name: str, res: Any, *, detect_s: float) -> list[FailureScenario]:
        """What happens when this resource fails (its rows in the failure scenarios table)."""
        return []

    def az_loss(self, name: str, res: Any) -> tuple[str, str]:
        """What losing one AZ does to the resource: (impact, data loss), each "" when there is nothing to say.
        The plan's "an AZ fails" row is made of these, so it names only what the system has."""
        return "", ""

    def region_loss_step(self, res: Any) -> str | None:
        """Recovery step the resource adds when the primary region fails (promote a replica), or None."""
        return None

    def replicates_across_regions(self, res: Any) -> bool:
        """Whether ``slo.rpo_seconds`` relies on this resource's asynchronous cross-region replication (so
        plan wants an alert on its replication lag)."""
        return False

    # ---- plan: capacity, prices, alerts (``stackwright.plan``)
    #: Its users' requests wait on it like on a database: plan's throughput model sizes them as DB-bound.
    database: ClassVar[bool] = False

    def legend_row(self, system: System, name: str, res: Any, *, regions: list[str],
                   primary: str) -> tuple[str, dict[str, str]] | None:
        """The resource's row in the capacity legend: (component label, region -> cell text)."""
        return None

    def limit_checks(self, system: System, name: str, res: Any, *, region: str,
                     demand: Mapping[str, tuple[float, str]]) -> tuple[list[LimitCheck], list[Finding]]:
        """Service limits of the resource in ``region`` against the peak: the checks and the findings of
        those exceeded. ``demand`` is every service's peak rps in the region (and its basis)."""
        return [], []

    def priced_instances(self, res: Any) -> list[tuple[str, str, str, str]]:
        """Instance types of the resource that must be in the price table: (price group such as
        ``elasticache``, instance type, spec field holding it, what to call it in an error). The spec check
        refuses an unpriced one at its field; plan prices ``<group>.<type>`` before anything else."""
        return []

    def cost_findings(self, system: System, name: str, res: Any) -> list[Finding]:
        """Findings about what the cost of this resource leaves out (an unset request estimate)."""
        return []

    def missing_alert(self, name: str, res: Any) -> tuple[str, str, str] | None:
        """The alert plan expects for this resource: (label that names the resource on a rendered alert,
        finding text when no alert carries it, hint); None: no alert expected."""
        return None
