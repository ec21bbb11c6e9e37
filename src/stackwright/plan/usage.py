"""Monthly usage the cost model needs: ``usage:`` from the spec, or a stated default for each unset field."""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import System

#: Defaults for a whole system per month (small-service scale; each use is printed as an assumption).
DEFAULTS: dict[str, float] = {
    "requests_millions": 10.0,
    "egress_gb": 50.0,
    "cdn_egress_gb": 50.0,
    "nat_gb": 10.0,
    "inter_az_gb": 10.0,
    "log_ingest_gb": 5.0,
    "custom_metrics": 10.0,
}
CROSS_REGION_GB_PER_SECONDARY = 10.0
IMAGE_GB_PER_SERVICE = 0.5


@dataclass(frozen=True)
class ResolvedUsage:
    """Every usage figure with a value, and the assumptions made for the unset ones."""

    values: dict[str, float]
    assumptions: tuple[str, ...]

    def __getitem__(self, key: str) -> float:
        return self.values[key]


def resolve_usage(system: System) -> ResolvedUsage:
    """Fill unset ``usage`` fields with defaults and say which were assumed."""
    given = system.usage.model_dump()
    values: dict[str, float] = {}
    notes: list[str] = []
    derived = {
        "cross_region_gb": (CROSS_REGION_GB_PER_SECONDARY * (len(system.regions) - 1),
                            f"{CROSS_REGION_GB_PER_SECONDARY:g} GB per secondary region"),
        "image_storage_gb": (IMAGE_GB_PER_SERVICE * len(system.services),
                             f"{IMAGE_GB_PER_SERVICE:g} GB of images per service"),
    }
    for key in ("requests_millions", "egress_gb", "cdn_egress_gb", "nat_gb", "inter_az_gb", "cross_region_gb",
                "log_ingest_gb", "custom_metrics", "image_storage_gb"):
        if given.get(key) is not None:
            values[key] = float(given[key])
            continue
        if key in derived:
            values[key], why = derived[key]
        else:
            values[key], why = DEFAULTS[key], "default"
        if key == "cdn_egress_gb" and not system.edge.cdn:
            continue
        if key == "nat_gb" and system.network.layout != "private":
            continue
        if key == "cross_region_gb" and len(system.regions) == 1:
            continue
        notes.append(f"usage.{key} not set: assumed {values[key]:g} ({why})")
    if given.get("load_balancer_gb") is not None:
        values["load_balancer_gb"] = float(given["load_balancer_gb"])
    else:
        values["load_balancer_gb"] = values["egress_gb"]
        notes.append(f"usage.load_balancer_gb not set: assumed equal to egress ({values['egress_gb']:g} GB)")
    return ResolvedUsage(values=values, assumptions=tuple(notes))
