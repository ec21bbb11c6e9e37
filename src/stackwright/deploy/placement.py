"""Where each part of a system runs: region roles, DR modes, availability zones and which region hosts
which resource. The CDK app creates exactly this; the manifests and the plan read it from here.

Availability zones: AWS maps AZ *names* (``us-east-1a``) to physical zones per account, and a few regions
hand new accounts a set that does not start at ``a`` (https://docs.aws.amazon.com/ram/latest/userguide/
working-with-az-ids.html; the regions and their zone counts are listed at https://docs.aws.amazon.com/
global-infrastructure/latest/regions/aws-availability-zones.html). The table below is what offline
synthesis uses (it is written into ``cdk.context.json``); a real deploy looks the account's names up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..spec import System
from ..spec.model import BucketResource, Region
from .errors import DeployError

#: Region for the global stack: Route 53 query logging and DNSSEC keys must live in us-east-1.
GLOBAL_REGION = "us-east-1"

#: AZ letters per region where they do not run a, b, c, ... (the others: ``abcdef``).
AZ_LETTERS: dict[str, str] = {
    "us-west-1": "bc",
    "ap-northeast-1": "acd",
    "ap-northeast-2": "abcd",
    "sa-east-1": "abc",
    "ca-central-1": "abd",
}
_DEFAULT_LETTERS = "abcdef"

DrMode = Literal["active", "warm-standby", "pilot-light"]

#: DR mode of a region whose spec has no ``dr:``: standby regions wait warm, the others serve.
DEFAULT_DR: dict[str, DrMode] = {"primary": "active", "secondary": "active", "standby": "warm-standby"}


def az_count(region: str) -> int:
    """How many AZ names :func:`availability_zones` knows for a region."""
    return len(AZ_LETTERS.get(region, _DEFAULT_LETTERS))


def availability_zones(region: str, count: int) -> list[str]:
    """The first ``count`` AZ names of ``region`` (e.g. ``["us-east-1a", "us-east-1b"]``)."""
    letters = AZ_LETTERS.get(region, _DEFAULT_LETTERS)
    if count > len(letters):
        raise DeployError(f"region {region} has only {len(letters)} availability zones; network.azs is {count}")
    return [f"{region}{letter}" for letter in letters[:count]]


def region(system: System, name: str) -> Region:
    """The spec of one region by name (:class:`DeployError` when the spec has no such region)."""
    for r in system.regions:
        if r.name == name:
            return r
    raise DeployError(f"region {name!r} is not in the spec (regions: {', '.join(r.name for r in system.regions)})")


def dr_mode(system: System, name: str) -> DrMode:
    """How a region runs in normal operation: the spec's ``dr:`` or :data:`DEFAULT_DR` for its role."""
    r = region(system, name)
    return r.dr or DEFAULT_DR[r.role]


def is_primary(system: System, name: str) -> bool:
    """Whether ``name`` is the primary (writer) region."""
    return name == system.primary_region.name


def other_regions(system: System) -> list[str]:
    """Every region but the primary, in spec order."""
    return [r.name for r in system.regions if r.role != "primary"]


def dr_region(system: System) -> str | None:
    """The region that receives DR copies (bucket replicas, backup copies): the first standby region,
    else the first other region; None for a single-region system."""
    others = [r for r in system.regions if r.role != "primary"]
    standby = [r for r in others if r.role == "standby"]
    return (standby or others)[0].name if others else None


def hosts(system: System, resource: str, name: str) -> bool:
    """Whether ``resource`` is provisioned in region ``name`` (its own copy, replica or not): the primary
    holds every resource, other regions those whose kind says each region has its own."""
    from ..resources import kind_of

    res = system.resources[resource]
    return is_primary(system, name) or kind_of(res).regional(res)


def hosting_region(system: System, resource: str, name: str) -> str:
    """Region whose copy of ``resource`` a service in region ``name`` talks to."""
    return name if hosts(system, resource, name) else system.primary_region.name


def bucket_regions(system: System, bucket: str) -> list[str]:
    """Every region holding a copy of a bucket, the primary first: then the regions of its
    ``replicate_to``, or when it names none, the DR region when the bucket is versioned (S3 replication
    requires versioning on both sides)."""
    res = system.resources[bucket]
    assert isinstance(res, BucketResource)
    out = [system.primary_region.name]
    if res.replicate_to:
        return out + [r for r in res.replicate_to if r not in out]
    dr = dr_region(system)
    if dr and res.versioned:
        out.append(dr)
    return out


@dataclass(frozen=True)
class Placement:
    """One region of a system as deployed: role, DR mode and the AZs its VPC spans."""

    region: str
    role: Literal["primary", "secondary", "standby"]
    dr: DrMode
    azs: tuple[str, ...]

    @property
    def serves_traffic(self) -> bool:
        """Whether the region runs at full scale in normal operation (``dr: active``)."""
        return self.dr == "active"


def region_placement(system: System, name: str) -> Placement:
    """The :class:`Placement` of region ``name``."""
    r = region(system, name)
    return Placement(region=r.name, role=r.role, dr=dr_mode(system, name),
                     azs=tuple(availability_zones(r.name, system.network.azs)))
