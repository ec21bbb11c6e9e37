"""VPC subnet layout per region: public, private and isolated subnets per AZ, carved from the VPC CIDR.

Layout (deterministic): private subnets, which hold nodes and (with the VPC CNI) every pod's IP, get the
largest blocks: the VPC split into ``2^ceil(log2(2 x azs))`` parts, the first ``azs`` of them. The rest of
the VPC is cut into blocks 5 bits smaller for the public subnets (load balancers, NAT gateways) and then the
isolated subnets (databases, caches; no route to the internet). A public-only network has one public
subnet per AZ from the same large blocks.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from ..spec import System
from .errors import PlanError

AZ_LETTERS = "abcdef"


@dataclass(frozen=True)
class Subnet:
    """One subnet: tier, AZ, CIDR and usable address count (AWS keeps 5 per subnet)."""

    tier: str
    az: str
    cidr: str

    @property
    def usable(self) -> int:
        """Addresses left after the 5 AWS reserves."""
        return ipaddress.ip_network(self.cidr).num_addresses - 5


@dataclass(frozen=True)
class RegionNetwork:
    """The subnets and NAT gateways of one region's VPC."""

    region: str
    vpc_cidr: str
    azs: tuple[str, ...]
    subnets: tuple[Subnet, ...]
    nat_azs: tuple[str, ...]

    def tier(self, tier: str) -> list[Subnet]:
        """Subnets of one tier, in AZ order."""
        return [s for s in self.subnets if s.tier == tier]


def layout(system: System, region_name: str) -> RegionNetwork:
    """Compute the subnet layout of one region from its CIDR and ``network`` settings."""
    region = next(r for r in system.regions if r.name == region_name)
    net = system.network
    vpc = ipaddress.ip_network(region.vpc_cidr, strict=False)
    azs = tuple(f"{region.name}{AZ_LETTERS[i]}" for i in range(net.azs))
    big_prefix = vpc.prefixlen + math.ceil(math.log2(2 * net.azs))
    small_prefix = big_prefix + 5
    if small_prefix > 28:
        raise PlanError(f"region {region.name}: VPC {region.vpc_cidr} is too small for {net.azs} AZs "
                        "(use a /16 to /20)")
    big = list(vpc.subnets(new_prefix=big_prefix))
    subnets: list[Subnet] = []
    if net.layout == "public-only":
        subnets += [Subnet("public", az, str(big[i])) for i, az in enumerate(azs)]
        nat_azs: tuple[str, ...] = ()
    else:
        subnets += [Subnet("private", az, str(big[i])) for i, az in enumerate(azs)]
        rest = list(big[net.azs].subnets(new_prefix=small_prefix))
        subnets += [Subnet("public", az, str(rest[i])) for i, az in enumerate(azs)]
        subnets += [Subnet("isolated", az, str(rest[net.azs + i])) for i, az in enumerate(azs)]
        nat_azs = azs if net.nat == "per-az" else azs[:1]
    return RegionNetwork(region=region.name, vpc_cidr=str(vpc), azs=azs, subnets=tuple(subnets), nat_azs=nat_azs)
