"""Object storage: a folder locally, S3 in AWS (replicated to the DR region when versioned).

Events. ``events: [{on: created | removed, prefix, suffix, queue}]`` sends S3's notification of each
matching object to a ``queue`` resource (an SQS queue in the bucket's region; FIFO queues cannot receive
S3 notifications). The queue's policy lets only this bucket (and only this account) send, and S3 may use
the regional data key the queue is encrypted with. Locally the object store is a folder and emits
nothing: a service that uploads must publish the event itself (send to the queue) when it runs locally.

Replication. ``replicate_to: [<region>]`` replicates every object (and delete markers) to a bucket of the
same name in each listed region, encrypted with that region's data key, through a replication role;
without it a versioned bucket of a multi-region system goes to the DR region as before. The plan prices
each replica's storage (``storage_gb`` in that region) and the transfer of ``monthly_upload_gb`` to it.

Object Lock. ``object_lock: {mode: COMPLIANCE | GOVERNANCE, retain_days: N}`` makes every object
write-once for ``retain_days`` days after it is written (WORM, e.g. an audit trail): on AWS the bucket is
created with Object Lock enabled and that default retention (S3 requires versioning, so the bucket must be
``versioned``; a replica bucket gets the same lock), and :class:`stackwright.runtime.storage.S3Store` also
sets the mode and retain-until date on each put; COMPLIANCE cannot be shortened or lifted by anyone,
GOVERNANCE by a principal with ``s3:BypassGovernanceRetention``. Locally the folder store refuses to
overwrite or delete an object before its retain-until date (:class:`stackwright.runtime.storage.LocalStore`),
as S3 refuses to delete the locked version. The lock costs nothing itself; an ``EXPIRE`` lifecycle rule
earlier than ``retain_days`` is refused (S3 could not expire a locked object), and the plan states that
``storage_gb`` must hold ``retain_days`` of uploads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..spec.errors import did_you_mean
from ..spec.strict import Strict
from .base import CostContext, Fail, LocalContext, ResourceKind


class LifecycleRule(Strict):
    after_days: int = Field(ge=1)
    storage_class: Literal["STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
                           "EXPIRE"]


class BucketEvent(Strict):
    """One S3 event notification to a queue."""

    on: Literal["created", "removed"] = Field(description="object created (any upload) or removed")
    prefix: str = Field("", description="only keys starting with this")
    suffix: str = Field("", description="only keys ending with this")
    queue: str = Field(description="queue resource the notification is sent to (standard, not FIFO)")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true; it can only mean this field here.
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @property
    def s3_event(self) -> str:
        """S3's event type: ``s3:ObjectCreated:*`` / ``s3:ObjectRemoved:*``."""
        return "s3:ObjectCreated:*" if self.on == "created" else "s3:ObjectRemoved:*"


class ObjectLock(Strict):
    """S3 Object Lock: each object is write-once for ``retain_days`` after it is written."""

    mode: Literal["COMPLIANCE", "GOVERNANCE"] = Field(
        "COMPLIANCE", description="COMPLIANCE: nobody can delete or shorten it (not even the account root); "
                                  "GOVERNANCE: principals with s3:BypassGovernanceRetention can")
    retain_days: int = Field(ge=1, le=36500, description="days each object stays locked after it is written")


class BucketResource(Strict):
    kind: Literal["bucket"]
    description: str = ""
    versioned: bool = True
    lifecycle: list[LifecycleRule] = Field(default_factory=list)
    storage_gb: float = Field(10, ge=0)
    events: list[BucketEvent] = Field(default_factory=list,
                                      description="S3 event notifications to queue resources (SQS)")
    replicate_to: list[str] = Field(
        default_factory=list, description="regions holding a replica (cross-region replication); default: the "
                                          "DR region for a versioned bucket of a multi-region system")
    monthly_upload_gb: float = Field(0, ge=0, description="new data per month: what replication transfers")
    object_lock: ObjectLock | None = Field(
        None, description="S3 Object Lock (write-once objects, e.g. an audit trail): {mode: COMPLIANCE | "
                          "GOVERNANCE, retain_days}; needs versioned: true")


class Bucket(ResourceKind):
    kind = "bucket"
    model = BucketResource
    plan_secret = True
    aws_api = False  # S3 has a gateway endpoint only in its own region; plan for 443 out
    product = "S3"
    consumer_verb = "append"
    request_verb = "put/get object"
    cdk_provision = "stackwright.resources.bucket:provision_cdk"
    cdk_grant = "stackwright.resources.bucket:grant_cdk"
    cdk_foundation = "stackwright.resources.bucket:foundation_cdk"

    async def provision_local(self, name: str, res: BucketResource, ctx: LocalContext) -> str:
        path = ctx.state_dir / "buckets" / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path.as_uri()) + lock_query(res)

    def check(self, system: Any, name: str, res: BucketResource, fail: Fail) -> None:
        for i, event in enumerate(res.events):
            loc = ("resources", name, "events", i, "queue")
            queue = system.resources.get(event.queue)
            if queue is None or queue.kind != "queue":
                queues = [q for q, r in system.resources.items() if r.kind == "queue"]
                raise fail(f"bucket '{name}' sends events to '{event.queue}', which is not a declared queue", loc,
                           did_you_mean(event.queue, queues, listed="declared queues"))
            if queue.fifo:
                raise fail(f"bucket '{name}' sends events to FIFO queue '{event.queue}'; S3 notifications go to "
                           "standard queues only", loc)
        regions = [r.name for r in system.regions]
        for i, region in enumerate(res.replicate_to):
            loc = ("resources", name, "replicate_to", i)
            if region not in regions:
                raise fail(f"bucket '{name}' replicates to {region}, which is not a region of the system", loc,
                           did_you_mean(region, regions, listed="declared"))
            if region == system.primary_region.name:
                raise fail(f"bucket '{name}' lives in {region}: it cannot replicate to itself", loc)
            if not res.versioned:
                raise fail(f"bucket '{name}' must be versioned to replicate", loc, "set versioned: true")
        if len(set(res.replicate_to)) != len(res.replicate_to):
            raise fail(f"bucket '{name}' lists a replica region twice", ("resources", name, "replicate_to"))
        if res.object_lock is not None:
            loc = ("resources", name, "object_lock")
            if not res.versioned:
                raise fail(f"bucket '{name}' has object_lock but is not versioned: S3 Object Lock works on object "
                           "versions only", loc, "set versioned: true (the default)")
            for i, rule in enumerate(res.lifecycle):
                if rule.storage_class == "EXPIRE" and rule.after_days < res.object_lock.retain_days:
                    raise fail(f"bucket '{name}' expires objects after {rule.after_days} days but locks them for "
                               f"{res.object_lock.retain_days}: a locked object cannot expire",
                               ("resources", name, "lifecycle", i, "after_days"),
                               f"expire after at least {res.object_lock.retain_days} days")

    def eks_url(self, system: Any, environment: str, name: str, res: BucketResource, *, region: str,
                hosted: str) -> str:
        from ..deploy import names as naming

        return f"s3://{naming.bucket_name(system, environment, name, hosted)}" + lock_query(res)

    def cost(self, name: str, res: BucketResource, ctx: CostContext) -> None:
        from ..deploy.placement import bucket_regions

        # Every copy CDK creates is stored (and billed): the primary's and each replica (deploy.placement).
        if ctx.region in bucket_regions(ctx.system, name):
            copy = "" if ctx.is_primary else " (replica)"
            shares = storage_class_shares(res)
            if len(shares) == 1:
                ctx.out.add("storage", f"S3 {name}{copy}: {res.storage_gb:g} GB", "s3.STANDARD", res.storage_gb,
                            "GB-month", assumption="monthly_upload_gb not set: all priced as STANDARD, lifecycle "
                                                   "transitions lower it" if res.lifecycle else "")
            else:
                months = res.storage_gb / res.monthly_upload_gb
                for storage_class, share in shares:
                    gb = res.storage_gb * share
                    ctx.out.add("storage", f"S3 {name}{copy}: {gb:,.0f} of {res.storage_gb:g} GB in {storage_class}",
                                f"s3.{storage_class}", gb, "GB-month",
                                assumption=f"steady uploads: {res.storage_gb:g} GB is {months:.1f} months of "
                                           f"{res.monthly_upload_gb:g} GB, split by the lifecycle's ages")
        if res.object_lock is not None and ctx.is_primary:
            ctx.assumptions.append(
                f"bucket {name}: Object Lock ({res.object_lock.mode}) costs nothing itself; storage_gb must hold "
                f"{res.object_lock.retain_days} days of uploads, which cannot be deleted or expired before then")
        if ctx.region in res.replicate_to:
            ctx.out.add("network", f"S3 {name} replication to {ctx.region}: {res.monthly_upload_gb:g} GB",
                        "transfer.inter_region_gb", res.monthly_upload_gb, "GB",
                        assumption="" if res.monthly_upload_gb else
                        f"resources.{name}.monthly_upload_gb not set: no replication transfer priced")

    def shared_node(self, name: str, res: BucketResource) -> tuple[str, str, str] | None:
        rule = ", ".join(f"{lc.after_days} d -> {lc.storage_class}" for lc in res.lifecycle)
        extra = [rule] if rule else []
        extra += [f"events -> {', '.join(sorted({e.queue for e in res.events}))}"] if res.events else []
        extra += [f"replicas: {', '.join(res.replicate_to)}"] if res.replicate_to else []
        lock = res.object_lock
        extra += [f"Object Lock {lock.mode} {lock.retain_days} d"] if lock else []
        return "S3_", f"S3 {name}" + "".join(f"<br/>{x}" for x in extra), "box"

    def diagram_links(self, system: Any, service: str, name: str, res: BucketResource, *, region: str,
                      primary: str, workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        return [f"{workload} --> {shared}"]

    def az_loss(self, name: str, res: BucketResource) -> tuple[str, str]:
        # Every storage class a lifecycle rule may pick keeps objects in several AZs (no One Zone-IA here).
        return "", f"none for bucket {name} (S3 keeps each object in several AZs)"

    def recovery(self, system: Any, name: str, res: BucketResource, *, detect_s: float) -> Any:
        from ..plan.model import StoreRecovery

        return StoreRecovery(name, "bucket", "s3", "S3 stores objects in 3+ AZs", "none needed within a region", 0.0,
                             0.0, 0.0, "0",
                             "unavailable until the region returns (no cross-region replication in the spec)")


def provision_cdk(stack: Any, name: str, res: BucketResource) -> None:
    """The bucket, replicated to its replica regions' buckets (made by :func:`foundation_cdk`)."""
    from ..render.aws.constructs.buckets import DataBucket

    plan = stack.plan
    # Unversioned buckets (the spec's choice) get their own id so the skips file can name them.
    kind = "Bucket" if res.versioned else "UnversionedBucket"
    stack.buckets[name] = DataBucket(
        stack, f"{kind}-{name}", spec=res, name=plan.bucket(name, stack.region_spec.name),
        key=stack.keys.data, access_logs=stack.foundation.access_logs.bucket, log_prefix=name,
        replicate_to=[(r, plan.bucket(name, r), stack.keys.alias_arn("data", r)) for r in plan.replica_regions(res)])


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: BucketResource, secrets: list[str]) -> None:
    """Read and write objects in the bucket here, else in the primary's bucket (and the local replica)."""
    from aws_cdk import aws_iam as iam

    plan, region = stack.plan, stack.region_spec.name
    if plan.hosts(name, region):
        stack.buckets[name].bucket.grant_read_write(role)
        return
    # Buckets live in the primary region (and a replica in the DR region).
    stores = [(plan.primary.name, plan.bucket(name, plan.primary.name))]
    if region in plan.replica_regions(res):
        stores.append((region, plan.bucket(name, region)))
    for store_region, bucket in stores:
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject*", "s3:PutObject", "s3:DeleteObject*", "s3:AbortMultipartUpload"],
            resources=[f"arn:{stack.partition}:s3:::{bucket}/*"]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket", "s3:GetBucketLocation"],
            resources=[f"arn:{stack.partition}:s3:::{bucket}"]))
        stack.remote_key(role, store_region)


def foundation_cdk(stack: Any, name: str, res: BucketResource) -> None:
    """The replica bucket in a replica region, and S3's use of the data key for event queues (once)."""
    from ..render.aws.constructs.buckets import DataBucket, allow_s3_notifications

    plan, region = stack.plan, stack.region_spec.name
    if region in plan.replica_regions(res):
        stack.replica_buckets[name] = DataBucket(
            stack, f"ReplicaBucket-{name}", spec=res, name=plan.bucket(name, region),
            key=stack.keys.data, access_logs=stack.access_logs.bucket, log_prefix=name)
    if res.events and "s3" not in stack.data_key_services:
        stack.data_key_services.add("s3")
        allow_s3_notifications(stack.keys.data, stack.account)


def lock_query(res: BucketResource) -> str:
    """The store URL's query naming the bucket's Object Lock (``?object_lock=COMPLIANCE&retain_days=N``), read
    by :func:`stackwright.runtime.storage.store_from_url`; empty without one."""
    lock = res.object_lock
    return f"?object_lock={lock.mode}&retain_days={lock.retain_days}" if lock else ""


def storage_class_shares(res: BucketResource) -> list[tuple[str, float]]:
    """Share of a bucket's ``storage_gb`` in each storage class at steady state, for pricing.

    Steady uploads of ``monthly_upload_gb`` make ``storage_gb`` hold ``storage_gb / monthly_upload_gb`` months
    of data, of evenly spread ages; each lifecycle transition moves the data older than its ``after_days``
    to its class (an ``EXPIRE`` rule ends the span). Without an upload rate (or rules) the age of the data is
    unknown: all of it is STANDARD, the most expensive case. Shares sum to 1.
    """
    rules = sorted((r for r in res.lifecycle if r.storage_class != "EXPIRE"), key=lambda r: r.after_days)
    if not rules or res.monthly_upload_gb <= 0 or res.storage_gb <= 0:
        return [("STANDARD", 1.0)]
    span = res.storage_gb / res.monthly_upload_gb * 30.0  # days of data held
    expire = min((r.after_days for r in res.lifecycle if r.storage_class == "EXPIRE"), default=None)
    if expire is not None:
        span = min(span, float(expire))
    bounds = [(0.0, "STANDARD")] + [(float(r.after_days), r.storage_class) for r in rules]
    shares: list[tuple[str, float]] = []
    for i, (start, storage_class) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else span
        days = max(0.0, min(end, span) - min(start, span))
        if days > 0:
            shares.append((storage_class, days / span))
    return shares


KIND: ResourceKind = Bucket()
