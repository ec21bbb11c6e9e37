"""Limits of managed data stores: PostgreSQL connections, Redis clients and Redis memory.

Sources (as of 2025-01; from the AWS documentation pages named, not fetched live):

* RDS / Aurora instance memory: "DB instance classes" (Amazon RDS User Guide, "Hardware specifications
  for DB instance classes") and "Aurora DB instance classes".
* PostgreSQL ``max_connections`` default: Amazon RDS User Guide, "Maximum number of database
  connections" (also the Aurora PostgreSQL parameter reference): ``LEAST({DBInstanceClassMemory/9531392},
  5000)``. ``DBInstanceClassMemory`` is the class's memory less what the OS and RDS processes keep, so
  using the nominal memory gives an upper bound: the real default is slightly lower, never higher.
* ElastiCache node memory: ElastiCache User Guide, "Supported node types" (memory in GiB per node).
* ElastiCache ``maxclients``: 65,000 on every node type ("Redis OSS-specific parameters"; not modifiable).
* ``reserved-memory-percent``: 25 by default (ElastiCache "Managing reserved memory"), so 75% of a node's
  memory holds data; the rest covers replication buffers, forks for snapshots and fragmentation.
"""

from __future__ import annotations

import math

from .errors import PlanError

PG_BYTES_PER_CONNECTION = 9_531_392
PG_MAX_CONNECTIONS_CAP = 5_000
REDIS_MAXCLIENTS = 65_000
REDIS_RESERVED_MEMORY = 0.25

#: Memory (GiB) of each DB instance class by size; a class's family picks the column.
_DB_SIZES_GIB: dict[str, dict[str, float]] = {
    "t": {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32},
    "m": {"large": 8, "xlarge": 16, "2xlarge": 32, "4xlarge": 64, "8xlarge": 128, "12xlarge": 192,
          "16xlarge": 256},
    "r": {"large": 16, "xlarge": 32, "2xlarge": 64, "4xlarge": 128, "8xlarge": 256, "12xlarge": 384,
          "16xlarge": 512},
}

#: ElastiCache node memory in GiB ("Supported node types").
CACHE_NODE_GIB: dict[str, float] = {
    "cache.t3.micro": 0.5, "cache.t3.small": 1.37, "cache.t3.medium": 3.09,
    "cache.t4g.micro": 0.5, "cache.t4g.small": 1.37, "cache.t4g.medium": 3.09,
    "cache.m5.large": 6.38, "cache.m6g.large": 6.38, "cache.m6g.xlarge": 12.93, "cache.m6g.2xlarge": 26.04,
    "cache.m7g.large": 6.38, "cache.m7g.xlarge": 12.93, "cache.m7g.2xlarge": 26.04,
    "cache.r5.large": 13.07, "cache.r6g.large": 13.07, "cache.r6g.xlarge": 26.32, "cache.r6g.2xlarge": 52.82,
    "cache.r6g.4xlarge": 105.81, "cache.r7g.large": 13.07, "cache.r7g.xlarge": 26.32,
    "cache.r7g.2xlarge": 52.82, "cache.r7g.4xlarge": 105.81,
}

GIB = 1024 ** 3


def db_memory_gib(instance_class: str) -> float:
    """Nominal memory of an RDS/Aurora class such as ``db.r6g.4xlarge`` (PlanError when unknown)."""
    parts = instance_class.split(".")
    sizes = _DB_SIZES_GIB.get(parts[1][:1]) if len(parts) == 3 and parts[0] == "db" and parts[1] else None
    if sizes is None or parts[2] not in sizes:
        raise PlanError(f"no memory size for DB instance class '{instance_class}' "
                        "(add its family and size to stackwright/plan/datastores.py)")
    return float(sizes[parts[2]])


def pg_max_connections(instance_class: str) -> int:
    """Default ``max_connections`` of RDS/Aurora PostgreSQL on this class (upper bound, see module doc)."""
    return min(math.floor(db_memory_gib(instance_class) * GIB / PG_BYTES_PER_CONNECTION), PG_MAX_CONNECTIONS_CAP)


def cache_memory_bytes(node_type: str) -> float:
    """Bytes one ElastiCache node can hold as data: node memory less the default reserved 25%."""
    try:
        gib = CACHE_NODE_GIB[node_type]
    except KeyError:
        raise PlanError(f"no memory size for cache node type '{node_type}' "
                        "(add it to stackwright/plan/datastores.py)") from None
    return gib * GIB * (1 - REDIS_RESERVED_MEMORY)
