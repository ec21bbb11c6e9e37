"""Checks of the spec's address-like values: VPC CIDRs, the edge domain, the issuer URL, HTTP paths.

A malformed address used to pass the loader and break later (``render`` wrote a VPC CDK cannot deploy,
``plan`` crashed carving subnets), so every one is checked when the spec loads, with its file:line.

VPC sizes follow AWS (docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html, as of 2025-01):
an IPv4 VPC CIDR is between /16 and /28. Regions of one system are peered or may be one day, and
peered VPCs must not overlap, so overlapping regional CIDRs are an error too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import SpecError

if TYPE_CHECKING:
    from .model import System
    from .yaml_lines import Loc

VPC_PREFIX_RANGE = (16, 28)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_PATH = re.compile(r"/[A-Za-z0-9_\-./]*")

Fail = Callable[[str, "Loc", str | None], SpecError]


def vpc_cidr(value: str) -> str:
    """A VPC CIDR as ``a.b.c.d/n``: a network address (no host bits) with a prefix AWS accepts.

    Raises ValueError with what is wrong and the nearest valid value where there is one.
    """
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 CIDR (e.g. 10.0.0.0/16)") from None
    if net.version != 4:
        raise ValueError(f"{value!r}: a VPC's primary CIDR must be IPv4")
    low, high = VPC_PREFIX_RANGE
    if not low <= net.prefixlen <= high:
        raise ValueError(f"{value!r}: a VPC CIDR must be /{low} to /{high} (AWS limit); /16 gives room for pod IPs")
    if str(net) != value:
        raise ValueError(f"{value!r} has host bits set; the network is {net}")
    return value


def hostname(value: str) -> str:
    """A DNS name (RFC 1123 labels, at least two of them). Raises ValueError otherwise."""
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{value!r} is not a DNS name (lower-case labels of a-z, 0-9 and '-', e.g. api.example.com)")
    return value


def check_addresses(system: System, fail: Fail) -> None:
    """Cross-field address checks: regional CIDRs do not overlap; domain, issuer and paths are well formed."""
    nets = [(i, r.name, ipaddress.ip_network(r.vpc_cidr)) for i, r in enumerate(system.regions)]
    for i, name, net in nets:
        for _, other, other_net in nets[:i]:
            if net.overlaps(other_net):
                raise fail(f"regions.{i}.vpc_cidr {net} of {name} overlaps {other_net} of {other}",
                           ("regions", i, "vpc_cidr"),
                           "give each region its own block (e.g. 10.0.0.0/16, 10.1.0.0/16, ...) so they can peer")
    edge = system.edge
    try:
        hostname(edge.domain)
    except ValueError as exc:
        raise fail(f"edge.domain: {exc}", ("edge", "domain"), None) from None
    if edge.identity is not None:
        issuer = urlsplit(edge.identity.issuer)
        # Production identity providers publish keys over TLS; only the dev IdP runs on plain http.
        schemes = ("https", "http") if edge.identity.provider == "dev" else ("https",)
        if issuer.scheme not in schemes or not issuer.hostname:
            raise fail(f"edge.identity.issuer {edge.identity.issuer!r} is not an {' or '.join(schemes)} URL",
                       ("edge", "identity", "issuer"), "e.g. https://example.eu.auth0.com/")
        if not _PATH.fullmatch(edge.identity.local_mount):
            raise fail(f"edge.identity.local_mount {edge.identity.local_mount!r} is not a path",
                       ("edge", "identity", "local_mount"), "e.g. /auth")
    for sname, svc in system.services.items():
        for probe_name in ("liveness", "readiness", "startup"):
            probe = getattr(svc.probes, probe_name)
            if probe is not None and not _PATH.fullmatch(probe.path):
                raise fail(f"services.{sname}.probes.{probe_name}.path {probe.path!r} is not an HTTP path",
                           ("services", sname, "probes", probe_name, "path"), "e.g. /healthz")
