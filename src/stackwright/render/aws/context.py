"""CDK context of the generated app: feature flags plus pre-filled availability-zone lookups."""

from __future__ import annotations

from typing import Any

from stackwright.spec.model import System

from ...deploy import names as naming
from ...deploy import placement
from .flags import FEATURE_FLAGS


def az_context(system: System, account: str = naming.PLACEHOLDER_ACCOUNT) -> dict[str, list[str]]:
    """``availability-zones:account=..:region=..`` entries for every region the app deploys to.

    They answer the lookups CDK records for environment-bound stacks, so ``cdk synth`` works with no
    AWS credentials (a real account still looks its zones up).
    """
    regions = sorted({r.name for r in system.regions} | {placement.GLOBAL_REGION})
    return {
        f"availability-zones:account={account}:region={region}": placement.availability_zones(
            region, min(max(system.network.azs, 3), placement.az_count(region)))
        for region in regions
    }


def app_context(system: System, account: str = naming.PLACEHOLDER_ACCOUNT) -> dict[str, Any]:
    """Everything passed to ``App(context=...)``: :data:`FEATURE_FLAGS` and :func:`az_context`."""
    return {**FEATURE_FLAGS, **az_context(system, account)}
