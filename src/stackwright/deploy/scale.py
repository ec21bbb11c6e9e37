"""How many replicas and nodes each region runs, per environment and DR mode.

The kustomize overlays, the CDK node groups and the plan's capacity and cost all read these, so a standby
region is rendered, created and priced at the same (standby) scale.

* Environment: production environments get the spec's ``replicas``; others are trimmed to
  ``min <= 2`` and ``max <= 5`` (a staging copy does not need production's headroom).
* DR mode (:func:`stackwright.deploy.placement.dr_mode`): ``active`` keeps that; ``warm-standby`` runs
  :data:`STANDBY_MIN_REPLICAS` per service (fewer if the spec's minimum is lower, e.g. a worker that scales
  to zero) and keeps the maximum, so the autoscaler takes the failed-over load; ``pilot-light`` runs the
  same replicas with the maximum pinned to them. One replica, not zero: Route 53 failover records only send
  traffic to an origin whose health check passes, so the standby must answer ``/healthz``.
* Node groups in a region that is not ``active`` start at :data:`STANDBY_NODES` (min and desired) and keep
  the spec's maximum: the cluster autoscaler adds nodes as pods are scheduled.
"""

from __future__ import annotations

from ..spec import System
from .environments import is_production
from .placement import dr_mode

#: Replicas per service in a warm-standby or pilot-light region (capped by the spec's own minimum).
STANDBY_MIN_REPLICAS = 1
#: Minimum and desired nodes of each node group in a region that is not ``active``.
STANDBY_NODES = 1
#: Caps applied outside production: (max of min, max of max).
NON_PRODUCTION_CAPS = (2, 5)


def replicas(system: System, region: str, environment: str, service: str) -> tuple[int, int]:
    """(min, max) replicas of ``service`` in ``region`` for ``environment`` (pods)."""
    spec = system.services[service].replicas
    low, high = spec.min, spec.max
    if not is_production(environment):
        low = min(low, NON_PRODUCTION_CAPS[0])
        high = max(low, min(high, NON_PRODUCTION_CAPS[1]))
    mode = dr_mode(system, region)
    if mode == "active":
        return low, high
    low = min(low, STANDBY_MIN_REPLICAS)
    return (low, low) if mode == "pilot-light" else (low, max(low, high))


def node_pool(system: System, region: str, pool: str) -> tuple[int, int, int]:
    """(min, desired, max) nodes of node group ``pool`` in ``region``."""
    spec = next(p for p in system.cluster.node_pools if p.name == pool)
    desired = spec.desired if spec.desired is not None else spec.min
    if dr_mode(system, region) == "active":
        return spec.min, desired, spec.max
    low = min(spec.min, STANDBY_NODES)
    return low, max(low, min(desired, STANDBY_NODES)), spec.max
