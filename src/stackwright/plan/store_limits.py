"""Connections and memory of the data stores against their limits, per region.

PostgreSQL connections: every pod of a service that uses the database opens up to ``pool.max``
connections, and a service can run ``replicas.max`` pods plus the rollout surge (the rendered Deployments
and canary Rollouts use ``maxSurge: 25%``). Writers (see :mod:`.roles`) connect to the primary instance in
the primary region from every region; readers connect to read replicas in their region when the spec has
them (in-region readers of the primary cluster, or cross-region replicas), else to the primary too. Each
instance allows the RDS default ``max_connections`` (:mod:`.datastores`). A per-tenant database's
process holds a pool per tenant: ``tenants.max x tenants.pool.max`` connections, bounded by
``tenants.connection_budget`` (:func:`stackwright.resources.postgres.connections_per_process`); when
that total is over the limit and no budget bounds it, the finding says so.

Redis clients: each pod of a service that uses a Redis opens at most :data:`REDIS_CONNECTIONS_PER_POD`
connections to every shard, against ElastiCache's ``maxclients``.

Redis memory: for each declared key family (``resources.<redis>.keys``), keys retained = creation rate x
retention. The rate is bounded two ways: the month's average (``usage.requests_millions`` spread over
the month, the family's service taking its share of requests) gives the least that is retained, the SLO
peak sustained for the whole retention (never more than a month's keys) the most. Without a retention the
keys never expire, and the months until the memory is full are reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..resources.postgres import connections_per_process
from ..spec import PostgresResource, System
from ..spec.quantities import seconds
from .datastores import REDIS_MAXCLIENTS, cache_memory_bytes, pg_max_connections
from .model import Finding, LimitCheck
from .roles import access
from .usage import resolve_usage

MAX_SURGE = 0.25
#: redis-py pool of ``stackwright.runtime`` (BlockingConnectionPool max_connections=200) + its multiplexed
#: connection: what one pod can open to one Redis at most.
REDIS_CONNECTIONS_PER_POD = 201
SECONDS_PER_MONTH = 730 * 3600.0


def pods_at_most(system: System, service: str) -> int:
    """Pods a service can run in one region: replicas.max plus the rolling-update / canary surge."""
    top = system.services[service].replicas.max
    return top + math.ceil(top * MAX_SURGE)


def postgres_connections(system: System, findings: list[Finding]) -> list[LimitCheck]:
    """Connections each PostgreSQL instance can get (writer at the primary, replicas per region)."""
    out: list[LimitCheck] = []
    primary = system.primary_region.name
    regions = [r.name for r in system.regions]
    for name, res in sorted(system.resources.items()):
        if res.kind != "postgres":
            continue
        users = sorted(s for s, svc in system.services.items() if name in svc.uses)
        if not users:
            continue
        per_pod = connections_per_process(res)
        conns = {s: pods_at_most(system, s) * connections_per_process(res, s) for s in users}
        readers = [s for s in users if access(system, s) == "read"]
        writers = [s for s in users if s not in readers]
        if res.engine == "external":
            for r in regions:
                out.append(LimitCheck(r, f"PostgreSQL {name} connections (external)", None, "connections",
                                      float(sum(conns.values())), "external database: its max_connections is not "
                                      "in the spec; compare with its setting"))
            continue
        limit = pg_max_connections(res.instance_class)

        def local_readers(region: str, res: PostgresResource = res) -> int:
            if region == primary:
                return res.instances - 1
            return max(1, res.instances - 1) if res.cross_region_replicas else 0

        def parts(services: list[str], pool: int = per_pod, res: PostgresResource = res) -> str:
            def label(s: str) -> str:
                if res.tenants is None:
                    return str(pool)
                return "1 (admin only)" if s in res.tenants.admin_only else _tenant_label(res)
            return " + ".join(f"{s} {pods_at_most(system, s)} pods x {label(s)}" for s in services)

        at_primary = float(sum(conns[s] for s in writers)) * len(regions)
        basis = [f"writers ({parts(writers)}) x {len(regions)} region(s)"] if writers else []
        for r in regions:
            if readers and not local_readers(r):
                at_primary += sum(conns[s] for s in readers)
                basis.append(f"readers of {r} ({parts(readers)})")
        formula = (f"limit: RDS default max_connections LEAST(memory/9531392, 5000) of {res.instance_class}; "
                   f"pods = replicas.max + {MAX_SURGE:.0%} surge")
        out.append(LimitCheck(primary, f"PostgreSQL {name} primary connections", float(limit), "connections",
                              at_primary, "; ".join(basis) + "; " + formula))
        if at_primary > limit and res.tenants is not None and res.tenants.connection_budget is None:
            findings.append(Finding(
                "high", "capacity",
                f"PostgreSQL {name} primary in {primary} can get {at_primary:,.0f} connections "
                f"({'; '.join(basis)}): every tenant's pool open in every pod, with no connection budget bounding "
                f"it, but {res.instance_class} allows {limit:,}",
                f"resources.{name}.tenants.connection_budget",
                "set tenants.connection_budget (the runtime then closes idle tenant pools), lower tenants.pool.max, "
                "or put RDS Proxy in front"))
        elif at_primary > limit:
            findings.append(Finding(
                "high", "capacity",
                f"PostgreSQL {name} primary in {primary} can get {at_primary:,.0f} connections "
                f"({'; '.join(basis)}) but {res.instance_class} allows {limit:,}",
                f"resources.{name}.pool.max" if res.tenants is None else f"resources.{name}.tenants",
                "put RDS Proxy or PgBouncer in front, lower pool.max or replicas.max, or use a larger instance class"))
        for r in regions:
            n = local_readers(r)
            if not readers or not n:
                continue
            demand = sum(conns[s] for s in readers) / n
            where = "in-region readers" if r == primary else "cross-region replicas"
            out.append(LimitCheck(r, f"PostgreSQL {name} read replica connections (each of {n})", float(limit),
                                  "connections", demand,
                                  f"readers {parts(readers)} spread over {n} {where}; {formula}"))
            if demand > limit:
                findings.append(Finding(
                    "high", "capacity",
                    f"PostgreSQL {name} read replicas in {r} can get {demand:,.0f} connections each "
                    f"({parts(readers)} over {n}) but {res.instance_class} allows {limit:,}",
                    f"resources.{name}.pool.max", "add read replicas (instances), lower pool.max, or use a proxy"))
    return out


def _tenant_label(res: PostgresResource) -> str:
    """``(50 tenants x 20, budget 200)``: how a per-tenant process's connections were counted."""
    assert res.tenants is not None
    every = f"{res.tenants.max} tenants x {res.tenants.pool.max}"
    budget = res.tenants.connection_budget
    return f"min({every}, budget {budget})" if budget else f"({every})"


def redis_clients(system: System, findings: list[Finding]) -> list[LimitCheck]:
    """Client connections each Redis node can get, against ElastiCache's maxclients."""
    out: list[LimitCheck] = []
    primary = system.primary_region.name
    for name, res in sorted(system.resources.items()):
        if res.kind != "redis":
            continue
        users = sorted(s for s, svc in system.services.items() if name in svc.uses)
        if not users:
            continue
        pods = {s: pods_at_most(system, s) for s in users}
        homes = [r.name for r in system.regions] if res.per_region else [primary]
        copies = 1 if res.per_region else len(system.regions)
        for r in homes:
            demand = float(sum(pods.values()) * REDIS_CONNECTIONS_PER_POD * copies)
            basis = (f"{' + '.join(f'{s} {n}' for s, n in pods.items())} pods (replicas.max + surge)"
                     + (f" x {copies} regions" if copies > 1 else "")
                     + f" x {REDIS_CONNECTIONS_PER_POD} connections per pod at most; limit: ElastiCache maxclients")
            out.append(LimitCheck(r, f"Redis {name} clients per node", float(REDIS_MAXCLIENTS), "connections",
                                  demand, basis))
            if demand > REDIS_MAXCLIENTS:
                findings.append(Finding(
                    "high", "capacity",
                    f"Redis {name} in {r} can get {demand:,.0f} client connections per node; ElastiCache allows "
                    f"{REDIS_MAXCLIENTS:,}", f"resources.{name}",
                    "lower replicas.max of its users or the runtime's pool size, or split the data"))
    return out


def redis_memory(system: System, region_demand: Mapping[str, Mapping[str, float]], region_peaks: Mapping[str, float],
                 findings: list[Finding]) -> list[LimitCheck]:
    """Memory the declared key families retain in each Redis against what its shards hold.

    ``region_demand`` is each region's request rate per service at the peak; ``region_peaks`` the regional
    peak (the service's share of it is also its share of the month's requests).
    """
    out: list[LimitCheck] = []
    usage = resolve_usage(system)
    primary = system.primary_region.name
    total_peak = sum(region_peaks.values()) or 1.0
    for name, res in sorted(system.resources.items()):
        if res.kind != "redis":
            continue
        capacity = cache_memory_bytes(res.node_type) * res.shards
        homes = [r.name for r in system.regions] if res.per_region else [primary]
        if not res.keys:
            for r in homes:
                out.append(LimitCheck(r, f"Redis {name} memory", capacity / 1e9, "GB", 0.0,
                                      f"no keys declared (resources.{name}.keys): retained data not estimated",
                                      assessed=False))
            continue
        for r in homes:
            served = [r] if res.per_region else [x.name for x in system.regions]
            low = high = 0.0
            never_expire = 0.0
            parts: list[str] = []
            for fam in res.keys:
                peak_rate = sum(region_demand[x][fam.created_by] for x in served) * fam.per_request
                share = sum(region_demand[x][fam.created_by] for x in served) / total_peak
                monthly = usage["requests_millions"] * 1e6 * share * fam.per_request
                if fam.retention is None:
                    never_expire += monthly * fam.bytes_per_key
                    low += monthly * fam.bytes_per_key
                    high += monthly * fam.bytes_per_key
                    parts.append(f"{fam.pattern}: {monthly / 1e6:,.1f} M keys/month x {fam.bytes_per_key} B, "
                                 "never expire (one month shown)")
                    continue
                ttl = seconds(fam.retention)
                months = ttl / SECONDS_PER_MONTH
                avg_keys = monthly * months
                # A peak cannot create more keys than the month's requests do.
                peak_keys = min(peak_rate * ttl, monthly * max(1.0, months))
                low += avg_keys * fam.bytes_per_key
                high += max(avg_keys, peak_keys) * fam.bytes_per_key
                parts.append(f"{fam.pattern}: {avg_keys / 1e6:,.1f}-{max(avg_keys, peak_keys) / 1e6:,.1f} M keys "
                             f"x {fam.bytes_per_key} B (retention {fam.retention}; month's average to peak "
                             f"{peak_rate:,.0f}/s sustained)")
            limit_text = (f"{res.shards} x {res.node_type} less 25% reserved memory")
            out.append(LimitCheck(r, f"Redis {name} memory", capacity / 1e9, "GB", high / 1e9,
                                  "; ".join(parts) + f"; at least {low / 1e9:,.1f} GB; limit: {limit_text}"))
            where = f"resources.{name}.node_type"
            fix = "use a larger node type or more shards, or shorten the keys' retention"
            if never_expire and low <= capacity:
                months = (capacity - (low - never_expire)) / never_expire
                findings.append(Finding(
                    "high" if months < 12 else "medium", "capacity",
                    f"Redis {name} in {r}: keys without retention grow {never_expire / 1e9:,.2f} GB a month and fill "
                    f"{capacity / 1e9:,.1f} GB in {months:,.1f} months", f"resources.{name}.keys",
                    "give the keys a TTL (retention) or plan their cleanup"))
            if low > capacity:
                findings.append(Finding(
                    "high", "capacity",
                    f"Redis {name} in {r} retains at least {low / 1e9:,.1f} GB of keys but holds "
                    f"{capacity / 1e9:,.1f} GB ({limit_text})", where, fix))
            elif high > capacity:
                findings.append(Finding(
                    "medium", "capacity",
                    f"Redis {name} in {r} retains up to {high / 1e9:,.1f} GB of keys if the peak lasts the "
                    f"retention, but holds {capacity / 1e9:,.1f} GB ({limit_text})", where, fix))
    return out
