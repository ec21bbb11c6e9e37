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

    async def provision_local(self, name: str, res: Any, ctx: LocalContext) -> str | None:
        """Create the local store (database, folder, ...) and return its ``<NAME>_URL``."""
        return None

    def local_name(self, system: System, name: str) -> str | None:
        """Real name of the resource locally when services need it besides the URL (queues)."""
        return None

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
    #: kind. None: render/aws/stacks.py still handles the kind itself (the six original kinds).
    cdk_provision: ClassVar[str | None] = None
    cdk_grant: ClassVar[str | None] = None

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
