"""The subnets of each region's VPC: exactly the CIDRs the CDK app's ``ec2.Vpc`` creates.

The CDK app builds its VPC from :func:`subnet_groups` (names, types, masks), and ``ec2.Vpc`` with
``IpAddresses.cidr`` places them; :func:`layout` repeats that placement so the plan can show the CIDRs
without synthesizing. Placement, as implemented in aws-cdk-lib (``aws-ec2/lib/vpc.ts`` ``createSubnets``,
``ip-addresses.ts`` ``Cidr.allocateSubnetsCidr``, ``network-util.ts`` ``NetworkBuilder.addSubnets`` and
``CidrBlock``): subnets are requested group by group in configuration order, and within a group AZ by AZ;
each takes the next free block of its mask, aligned up to a multiple of its own size. A test synthesizes
the CDK app and compares every ``AWS::EC2::Subnet`` ``CidrBlock`` with this layout.

Sizes: private subnets, which hold the nodes and (with the VPC CNI) every pod's IP, get 1/8 of the VPC
each; public (load balancers, NAT gateways) and isolated subnets (databases, caches; no internet route)
get 1/64 each. A public-only network has one 1/8 public subnet per AZ holding the nodes. Every mask is
capped at /28, the smallest subnet AWS allows. AWS keeps 5 addresses of every subnet
(https://docs.aws.amazon.com/vpc/latest/userguide/subnet-sizing.html).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from ..spec import System
from .errors import DeployError
from .placement import availability_zones, region

#: CDK subnet group names. In a public-only network the nodes themselves sit in public subnets.
PUBLIC, PRIVATE, ISOLATED, PUBLIC_NODES = "public", "private", "isolated", "public-nodes"

Tier = Literal["public", "private", "isolated"]

#: Addresses AWS reserves in every subnet (network, router, DNS, future use, broadcast).
AWS_RESERVED_PER_SUBNET = 5
#: Smallest subnet AWS allows (and the largest mask CDK accepts).
SMALLEST_MASK = 28

#: Interface VPC endpoints of a private VPC with ``vpc_endpoints`` (the S3 gateway endpoint, free, comes too):
#: image pulls (ecr.api, ecr.dkr), IRSA and pod identity (sts, eks-auth), logs, secretsmanager, sqs, ec2 (the
#: VPC CNI), and ssm, ssmmessages, ec2messages: Session Manager shells on nodes with no SSH or bastion. The CDK
#: app renders exactly these and the plan prices them.
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "eks-auth", "logs", "secretsmanager", "sqs", "ec2", "ssm",
                       "ssmmessages", "ec2messages")


@dataclass(frozen=True)
class SubnetGroup:
    """One CDK ``SubnetConfiguration``: a group name, what kind of subnet, and its mask (prefix length)."""

    name: str
    tier: Tier
    mask: int


@dataclass(frozen=True)
class Subnet:
    """One subnet: tier (public/private/isolated), CDK group name, AZ and CIDR."""

    tier: Tier
    group: str
    az: str
    cidr: str

    @property
    def usable(self) -> int:
        """Addresses left after the :data:`AWS_RESERVED_PER_SUBNET` AWS keeps."""
        return ipaddress.ip_network(self.cidr).num_addresses - AWS_RESERVED_PER_SUBNET


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


def masks(vpc_cidr: str) -> tuple[int, int]:
    """(large, small) subnet masks of a VPC: 1/8 and 1/64 of it, capped at /28."""
    prefix = ipaddress.ip_network(vpc_cidr, strict=False).prefixlen
    return min(prefix + 3, SMALLEST_MASK), min(prefix + 6, SMALLEST_MASK)


def subnet_groups(system: System, region_name: str) -> list[SubnetGroup]:
    """The subnet configuration of a region's VPC, in the order CDK allocates it."""
    large, small = masks(region(system, region_name).vpc_cidr)
    if system.network.layout == "public-only":
        return [SubnetGroup(PUBLIC_NODES, "public", large)]
    return [SubnetGroup(PUBLIC, "public", small), SubnetGroup(PRIVATE, "private", large),
            SubnetGroup(ISOLATED, "isolated", small)]


def nat_gateways(system: System) -> int:
    """NAT gateways per region: one per AZ, one in total, or none (public-only)."""
    if system.network.layout == "public-only":
        return 0
    return system.network.azs if system.network.nat == "per-az" else 1


def layout(system: System, region_name: str) -> RegionNetwork:
    """The subnets CDK creates in one region (see the module docstring for the placement rule)."""
    r = region(system, region_name)
    vpc = ipaddress.ip_network(r.vpc_cidr, strict=False)
    azs = tuple(availability_zones(r.name, system.network.azs))
    base, end = int(vpc.network_address), int(vpc.broadcast_address)
    nxt = base
    subnets: list[Subnet] = []
    for group in subnet_groups(system, region_name):
        size = 2 ** (32 - group.mask)
        for az in azs:
            start = -(-nxt // size) * size  # next multiple of the block size at or after nxt
            if start + size - 1 > end:
                raise DeployError(f"region {r.name}: VPC {r.vpc_cidr} is too small for {len(azs)} AZs of "
                                  f"/{group.mask} {group.name} subnets (use a /16 to /20)")
            subnets.append(Subnet(group.tier, group.name, az,
                                  f"{ipaddress.ip_address(start)}/{group.mask}"))
            nxt = start + size
    nat_azs = azs[:nat_gateways(system)]
    return RegionNetwork(region=r.name, vpc_cidr=str(vpc), azs=azs, subnets=tuple(subnets), nat_azs=nat_azs)
