"""Instance types the spec names must be ones stackwright can price and size.

``plan`` prices every node, database instance, cache node and search instance from the dated price table
(``stackwright/plan/prices/aws.yaml``). A type missing there used to stop ``plan`` long after ``render``
and ``up`` had accepted the spec; now it is a spec error at load, at the key's line, listing the types
that are priced. The table is read as data (YAML) so the spec does not import the planner.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .errors import SpecError

if TYPE_CHECKING:
    from .model import System
    from .yaml_lines import Loc

PRICE_TABLE = Path(__file__).resolve().parents[1] / "plan" / "prices" / "aws.yaml"

Fail = Callable[[str, "Loc", str | None], SpecError]


@cache
def priced(group: str, table: Path = PRICE_TABLE) -> tuple[str, ...]:
    """Names priced in one group of the price table (``ec2``, ``aurora``, ``rds``, ``elasticache``, ...)."""
    data = yaml.safe_load(table.read_text(encoding="utf-8")) or {}
    spec = (data.get("groups") or {}).get(group) or {}
    return tuple(sorted({*(spec.get("prices") or {}), *(spec.get("tiers") or {})}))


def _family_order(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


def check_priced(system: System, fail: Fail, table: Path = PRICE_TABLE) -> None:
    """Every instance type in the spec has a price in ``table`` (else a SpecError naming the key)."""
    def need(group: str, name: str, loc: Loc, what: str) -> None:
        names = priced(group, table)
        if name not in names:
            listing = ", ".join(sorted(names, key=_family_order))
            raise fail(f"{'.'.join(map(str, loc))}: {what} '{name}' has no price in {table.name} ({group})",
                       loc, f"priced {what}s: {listing}; or add it to the table with its source")

    for i, pool in enumerate(system.cluster.node_pools):
        for j, itype in enumerate(pool.instance_types):
            need("ec2", itype, ("cluster", "node_pools", i, "instance_types", j), "instance type")
    # Imported here: the resources package loads the spec first (see stackwright.resources).
    from ..resources import kind_of

    for rname, res in system.resources.items():
        for group, itype, field, what in kind_of(res).priced_instances(res):
            need(group, itype, ("resources", rname, field), what)
