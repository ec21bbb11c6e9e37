"""Cross-checks of ``resources.<redis>.keys``: the service that creates the keys exists and uses the Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import SpecError, did_you_mean

if TYPE_CHECKING:
    from .model import System
    from .yaml_lines import Loc

Fail = Callable[[str, "Loc", str | None], SpecError]


def check_redis_keys(system: System, fail: Fail) -> None:
    """Each key family names a declared service that uses this Redis resource."""
    for rname, res in system.resources.items():
        if res.kind != "redis":
            continue
        for i, family in enumerate(res.keys):
            loc: Loc = ("resources", rname, "keys", i, "created_by")
            svc = system.services.get(family.created_by)
            if svc is None:
                raise fail(f"resources.{rname}.keys[{i}].created_by '{family.created_by}' is not a declared service",
                           loc, did_you_mean(family.created_by, system.services, listed="declared"))
            if rname not in svc.uses:
                raise fail(f"resources.{rname}.keys[{i}]: service '{family.created_by}' does not use {rname}",
                           loc, f"add {rname} to services.{family.created_by}.uses")
