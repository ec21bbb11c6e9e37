"""The system spec: system.yaml -> a typed, validated :class:`System`."""

from .errors import SpecError
from .load import check_references, find_system_file, load_system, start_order
from .model import (
    BucketResource,
    Cluster,
    Edge,
    NodePool,
    PostgresResource,
    QueueResource,
    RedisResource,
    Region,
    Route,
    SearchResource,
    Service,
    Slo,
    System,
    TopicResource,
)

__all__ = [
    "BucketResource", "Cluster", "Edge", "NodePool", "PostgresResource", "QueueResource", "RedisResource",
    "Region", "Route", "SearchResource", "Service", "Slo", "SpecError", "System", "TopicResource",
    "check_references", "find_system_file", "load_system", "start_order",
]
