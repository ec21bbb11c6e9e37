"""Object storage: a folder locally, S3 in AWS (replicated to the DR region when versioned)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind


class LifecycleRule(Strict):
    after_days: int = Field(ge=1)
    storage_class: Literal["STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
                           "EXPIRE"]


class BucketResource(Strict):
    kind: Literal["bucket"]
    description: str = ""
    versioned: bool = True
    lifecycle: list[LifecycleRule] = Field(default_factory=list)
    storage_gb: float = Field(10, ge=0)


class Bucket(ResourceKind):
    kind = "bucket"
    model = BucketResource
    plan_secret = True
    aws_api = False  # S3 has a gateway endpoint only in its own region; plan for 443 out
    product = "S3"
    consumer_verb = "append"
    request_verb = "put/get object"

    async def provision_local(self, name: str, res: BucketResource, ctx: LocalContext) -> str:
        path = ctx.state_dir / "buckets" / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path.as_uri())

    def eks_url(self, system: Any, environment: str, name: str, res: BucketResource, *, region: str,
                hosted: str) -> str:
        from ..deploy import names as naming

        return f"s3://{naming.bucket_name(system, environment, name, hosted)}"

    def cost(self, name: str, res: BucketResource, ctx: CostContext) -> None:
        from ..deploy.placement import bucket_regions

        # Every copy CDK creates is stored (and billed): the primary's and the DR region's replica.
        if ctx.region in bucket_regions(ctx.system, name):
            copy = "" if ctx.is_primary else " (replica)"
            ctx.out.add("storage", f"S3 {name}{copy}: {res.storage_gb:g} GB", "s3.STANDARD", res.storage_gb,
                        "GB-month",
                        assumption="priced as STANDARD; lifecycle transitions lower it" if res.lifecycle else "")

    def shared_node(self, name: str, res: BucketResource) -> tuple[str, str, str] | None:
        rule = ", ".join(f"{lc.after_days} d -> {lc.storage_class}" for lc in res.lifecycle)
        return "S3_", f"S3 {name}" + (f"<br/>{rule}" if rule else ""), "box"


KIND: ResourceKind = Bucket()
