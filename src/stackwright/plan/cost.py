"""Monthly cost: every line item from the dated price table, totals that are sums of lines, and scenarios.

One environment is priced (``--environment``). Node counts are the baseline the node groups run outside
the peak (the desired size, or more when the minimum replicas do not fit); the capacity section shows
what the peak adds. Each line is rounded to cents and every total is the sum of its rounded lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from ..deploy.network import INTERFACE_ENDPOINTS
from ..resources import kind_of
from ..spec import System
from .capacity import region_shares
from .k8s import SECRET_KINDS
from .model import CapacityReport, CostLine, CostReport, CostScenario, Finding
from .prices import PriceTable
from .usage import resolve_usage

CENT = Decimal("0.01")
ROOT_VOLUME_GB = 20
WAF_MANAGED_RULE_GROUPS = 3
CATEGORIES = ("cluster", "compute", "database", "cache", "search", "network", "edge", "messaging", "storage",
              "secrets", "observability", "data transfer")


def usd(value: float) -> Decimal:
    """A float amount rounded half-up to cents."""
    return Decimal(repr(float(value))).quantize(CENT, rounding=ROUND_HALF_UP)


class _Lines:
    """Collects cost lines for one region, pricing each from the table."""

    def __init__(self, prices: PriceTable, region: str, price_region: str) -> None:
        self.prices, self.region, self.price_region = prices, region, price_region
        self.lines: list[CostLine] = []

    def add(self, category: str, item: str, key: str, quantity: float, unit: str, *, discount: str | None = None,
            factor: float = 1.0, assumption: str = "", spot_ok: bool = False) -> None:
        """Price ``quantity`` of ``key`` in this region and append the line."""
        charge = self.prices.charge(key, quantity, self.price_region) * factor
        unit_price = (self.prices.effective_unit_price(key, quantity, self.price_region) * factor)
        self.lines.append(CostLine(category=category, item=item, region=self.region, quantity=round(quantity, 6),
                                   unit=unit, unit_price=round(unit_price, 6), monthly_usd=usd(charge),
                                   price_key=key, discount_class=discount, assumption=assumption, spot_ok=spot_ok))


@dataclass
class _KindCost:
    """What a resource kind's cost hook sees of one region (:class:`stackwright.resources.CostContext`)."""

    system: System
    out: _Lines
    region: str
    is_primary: bool
    share: float
    hours: float
    assumptions: list[str]


def _pool_allows_spot(system: System, pool: str, home: str) -> bool:
    members = [s for n, s in system.services.items() if (s.node_pool or home) == pool]
    return all(s.replicas.min >= 2 for s in members)


def build_cost(system: System, capacity: CapacityReport, prices: PriceTable, environment: str,
               lb_kinds: Mapping[str, str]) -> tuple[CostReport, list[Finding]]:
    """Price one environment of the system, line by line, with purchase-option scenarios."""
    from .capacity import default_pool

    usage = resolve_usage(system)
    shares = region_shares(system)
    hours = prices.hours_per_month
    primary = system.primary_region.name
    home = default_pool(system)
    assumptions: list[str] = list(usage.assumptions)
    lines: list[CostLine] = []
    n_regions = len(system.regions)

    for region in system.regions:
        r = region.name
        share = shares[r]
        out = _Lines(prices, r, r)
        out.add("cluster", "EKS control plane", "eks.control_plane", hours, "cluster-hours")

        for pool in system.cluster.node_pools:
            pc = next(p for p in capacity.pools if p.region == r and p.pool == pool.name)
            n = pc.baseline_nodes
            itype = pool.instance_types[0]
            if pool.capacity == "spot":
                out.add("compute", f"Nodes {pool.name}: {n} x {itype} (spot)", f"ec2.{itype}", n * hours,
                        "instance-hours", factor=prices.option_factor("spot", "ec2"),
                        assumption="declared spot: average spot discount from the price table")
            else:
                out.add("compute", f"Nodes {pool.name}: {n} x {itype} (on-demand)", f"ec2.{itype}", n * hours,
                        "instance-hours", discount="ec2", spot_ok=_pool_allows_spot(system, pool.name, home))
            out.add("compute", f"Node root volumes {pool.name}: {n} x {ROOT_VOLUME_GB} GB gp3", "ebs.gp3",
                    n * ROOT_VOLUME_GB, "GB-month")

        ctx = _KindCost(system=system, out=out, region=r, is_primary=r == primary, share=share, hours=hours,
                        assumptions=assumptions)
        for name, res in sorted(system.resources.items()):
            kind_of(res).cost(name, res, ctx)

        ingress = [n for n, s in system.services.items() if s.routes and s.expose == "ingress"]
        lb_gb = usage["load_balancer_gb"] * share
        req_m = usage["requests_millions"] * share
        if ingress:
            out.add("network", "Application Load Balancer (shared Ingress)", "elb.alb_hour", hours, "LB-hours")
            lcu = max(lb_gb, req_m * 1e6 / 3.6e6)
            out.add("network", "ALB capacity units", "elb.alb_lcu_hour", lcu, "LCU-hours",
                    assumption="LCU-hours = max(GB processed, requests / 3.6M rule evaluations)")
        lb_services = sorted(n for n, s in system.services.items() if s.expose == "load-balancer")
        for svc_name in lb_services:
            kind = lb_kinds.get(svc_name, "clb")
            each_gb = lb_gb / len(lb_services)
            if kind == "nlb":
                out.add("network", f"Network Load Balancer ({svc_name})", "elb.nlb_hour", hours, "LB-hours")
                out.add("network", f"NLB capacity units ({svc_name})", "elb.nlb_lcu_hour", each_gb, "NLCU-hours")
            else:
                out.add("network", f"Classic Load Balancer ({svc_name})", "elb.clb_hour", hours, "LB-hours",
                        assumption="Service type LoadBalancer without an NLB annotation gets a Classic LB on EKS")
                out.add("network", f"Classic LB data processed ({svc_name})", "elb.clb_gb", each_gb, "GB")
        if system.network.layout == "private":
            nats = system.network.azs if system.network.nat == "per-az" else 1
            out.add("network", f"NAT gateways: {nats}", "nat.hour", nats * hours, "gateway-hours")
            out.add("network", "NAT data processed", "nat.gb", usage["nat_gb"] * share, "GB")
            if system.network.vpc_endpoints:
                # What the CDK app renders (the S3 gateway endpoint is free).
                n_ep = len(INTERFACE_ENDPOINTS)
                out.add("network", f"VPC interface endpoints: {n_ep} x {system.network.azs} AZs",
                        "vpc_endpoint.az_hour", n_ep * system.network.azs * hours, "endpoint-AZ-hours",
                        assumption=f"endpoints for {', '.join(INTERFACE_ENDPOINTS)}")

        if system.edge.api_gateway is not None:
            out.add("edge", "API Gateway (HTTP API) requests", "apigateway.http_api_million", req_m, "million requests")
        if system.edge.waf is not None:
            rules = 1 + (WAF_MANAGED_RULE_GROUPS if system.edge.waf.managed_rules else 0)
            out.add("edge", "WAF web ACL", "waf.web_acl_month", 1, "ACL-months")
            out.add("edge", f"WAF rules: {rules}", "waf.rule_month", rules, "rule-months",
                    assumption=f"1 rate-based rule + {WAF_MANAGED_RULE_GROUPS} AWS managed rule groups"
                    if system.edge.waf.managed_rules else "1 rate-based rule")
            out.add("edge", "WAF requests", "waf.request_million", req_m, "million requests")

        secrets = sorted(n for n, res in system.resources.items() if res.kind in SECRET_KINDS)
        if secrets:
            out.add("secrets", f"Secrets Manager: {len(secrets)} secrets", "secretsmanager.secret_month",
                    len(secrets), "secret-months", assumption="one secret per resource with credentials, per region")

        out.add("storage", "ECR images (one repository per service in each region)", "ecr.storage_gb_month",
                usage["image_storage_gb"], "GB-month")
        logs = usage["log_ingest_gb"] * share
        out.add("observability", "CloudWatch Logs ingestion", "cloudwatch_logs.ingest_gb", logs, "GB")
        out.add("observability", f"CloudWatch Logs storage ({system.monitoring.log_retention_days} days)",
                "cloudwatch_logs.storage_gb_month", logs * system.monitoring.log_retention_days / 30, "GB-month",
                assumption="uncompressed size: an upper bound")
        out.add("observability", "CloudWatch custom metrics", "cloudwatch.custom_metric_month",
                usage["custom_metrics"] * share, "metric-months")

        out.add("data transfer", "Internet egress", "transfer.internet_egress", usage["egress_gb"] * share, "GB")
        out.add("data transfer", "Inter-AZ traffic (both directions)", "transfer.inter_az_gb",
                usage["inter_az_gb"] * share * 2, "GB")
        if n_regions > 1:
            out.add("data transfer", "Inter-region traffic", "transfer.inter_region_gb",
                    usage["cross_region_gb"] * share, "GB")
        lines += out.lines

    glob = _Lines(prices, "global", primary)
    glob.add("edge", "Route 53 hosted zone", "route53.hosted_zone_month", 1, "zone-months")
    if n_regions > 1:
        glob.add("edge", f"Route 53 health checks: {n_regions}", "route53.health_check_month", n_regions,
                 "check-months")
        options = 1 + (1 if system.edge.health_check_interval_s == 10 else 0)
        glob.add("edge", f"Route 53 health check options: HTTPS{', fast interval' if options > 1 else ''}",
                 "route53.health_check_option_month", n_regions * options, "option-months")
    if system.edge.cdn:
        glob.add("edge", "CloudFront egress", "cloudfront.egress_gb", usage["cdn_egress_gb"], "GB",
                 assumption="request fees not included")
    lines += glob.lines

    order = {c: i for i, c in enumerate(CATEGORIES)}
    regions = [r.name for r in system.regions] + ["global"]
    lines.sort(key=lambda ln: (regions.index(ln.region), order.get(ln.category, 99)))
    scenarios = [CostScenario("as_specified", "On-demand (as specified)", tuple(lines)),
                 _scenario(prices, "spot", lines), _scenario(prices, "reserved_1yr", lines)]
    if len(system.environments) > 1:
        assumptions.append(f"priced for one environment ({environment}); the spec lists "
                           f"{', '.join(system.environments)}")
    assumptions.append("free tiers are ignored; Route 53 queries, KMS keys and S3 requests are not priced")
    report = CostReport(environment=environment, price_table=f"stackwright/plan/prices/{prices.path.name}",
                        as_of=prices.as_of, basis=prices.basis_for([r.name for r in system.regions]),
                        source=prices.source, lines=lines,
                        scenarios=scenarios, assumptions=assumptions, budget_usd=system.slo.monthly_budget_usd)
    findings: list[Finding] = []
    budget = system.slo.monthly_budget_usd
    if budget is not None and report.total_usd > usd(budget):
        best = min(scenarios, key=lambda s: s.total_usd)
        findings.append(Finding("high", "cost",
                                f"monthly cost ${report.total_usd:,.2f} exceeds slo.monthly_budget_usd ${budget:,.2f}",
                                "slo.monthly_budget_usd",
                                f"cheapest scenario '{best.label}' is ${best.total_usd:,.2f}"))
    unset = [a.split(" ", 1)[0] for a in usage.assumptions]
    if unset:
        findings.append(Finding("low", "cost", f"{len(unset)} usage figures are assumed small defaults "
                                f"({', '.join(u.removeprefix('usage.') for u in unset)}), so traffic-driven lines "
                                "(requests, egress, logs) may be far off", "usage",
                                "add a usage: section with monthly estimates"))
    for name, res in sorted(system.resources.items()):
        findings += kind_of(res).cost_findings(system, name, res)
    return report, findings


def _scenario(prices: PriceTable, option: str, lines: list[CostLine]) -> CostScenario:
    label = str(prices.purchase_options.get(option, {}).get("label", option))
    out: list[CostLine] = []
    for line in lines:
        factor = 1.0
        if option == "spot":
            factor = prices.option_factor("spot", line.discount_class) if line.spot_ok else 1.0
        else:
            factor = prices.option_factor(option, line.discount_class)
        if factor != 1.0:
            line = replace(line, unit_price=round(line.unit_price * factor, 6),
                           monthly_usd=usd(float(line.monthly_usd) * factor),
                           assumption=(line.assumption + "; " if line.assumption else "") + f"{option} x{factor:g}")
        out.append(line)
    return CostScenario(option, label, tuple(out))
