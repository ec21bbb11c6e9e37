"""The resolved deployment model: what a spec becomes once it is deployed, computed once.

``spec -> deploy -> (local | render | plan)``. Everything the CDK app creates and the manifests and the
plan must agree on is decided here, per region and environment:

* :mod:`.placement`: region role, DR mode, AZs (one AZ table), which region hosts which resource;
* :mod:`.names`: every physical name (stacks, cluster, roles, queues, buckets with the S3 rules checked
  once, secrets, KMS aliases, hosts);
* :mod:`.network`: the exact subnet CIDRs CDK's ``ec2.Vpc`` creates;
* :mod:`.scale`: replicas per service and nodes per node group, at a standby scale where the region's
  DR mode says so;
* :mod:`.environments`: which environments are production and the default one;
* :mod:`.routes`: the edge's route table, what the internet can reach: the local gateway matches requests
  against it and the ALB Ingress is rendered from it.

This package imports only :mod:`stackwright.spec`: never ``render``, ``plan``, ``local`` or ``aws_cdk``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import System
from . import names
from .environments import default_environment, is_production
from .errors import DeployError
from .network import RegionNetwork, layout
from .placement import Placement, bucket_regions, region_placement
from .routes import EdgeTable, edge_table
from .scale import node_pool, replicas


@dataclass(frozen=True)
class RegionDeployment:
    """One region of one environment: placement, subnets, replicas (service -> (min, max) pods) and
    node groups (pool -> (min, desired, max) nodes)."""

    placement: Placement
    network: RegionNetwork
    replicas: dict[str, tuple[int, int]]
    node_pools: dict[str, tuple[int, int, int]]
    cluster: str
    stack: str


@dataclass(frozen=True)
class Deployment:
    """A system deployed as one environment: its regions in spec order, where each bucket is kept, and the
    edge's route table (:func:`.routes.edge_table`)."""

    system: System
    environment: str
    regions: dict[str, RegionDeployment]
    buckets: dict[str, list[str]]
    edge: EdgeTable


def resolve(system: System, environment: str | None = None) -> Deployment:
    """Resolve ``system`` for ``environment`` (default: :func:`default_environment`).

    Raises :class:`DeployError` for anything no deployment can honour: an unknown environment, too many
    AZs for a region, a VPC too small for its subnets, a bucket name S3 rejects.
    """
    env = environment or default_environment(system)
    if env not in system.environments:
        raise DeployError(f"environment {env!r} is not in the spec (environments: {', '.join(system.environments)})")
    regions: dict[str, RegionDeployment] = {}
    for r in system.regions:
        regions[r.name] = RegionDeployment(
            placement=region_placement(system, r.name), network=layout(system, r.name),
            replicas={s: replicas(system, r.name, env, s) for s in system.services},
            node_pools={p.name: node_pool(system, r.name, p.name) for p in system.cluster.node_pools},
            cluster=names.cluster_name(system, env, r.name),
            stack=names.regional_stack_name(system, env, r.name))
    buckets = {b: bucket_regions(system, b) for b in system.resources_of("bucket")}
    for bucket, where in buckets.items():  # every bucket name is checked before anything is rendered
        for region in where:
            names.bucket_name(system, env, bucket, region)
    for r in system.regions:
        names.bucket_name(system, env, "access-logs", r.name)
        names.alb_log_bucket(system, env, r.name)
    return Deployment(system=system, environment=env, regions=regions, buckets=buckets,
                      edge=edge_table(system, env))


__all__ = [
    "DeployError",
    "Deployment",
    "EdgeTable",
    "RegionDeployment",
    "default_environment",
    "is_production",
    "names",
    "resolve",
]
