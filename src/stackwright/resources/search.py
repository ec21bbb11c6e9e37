"""Full-text search: a Postgres database (full-text) locally, OpenSearch in AWS."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind


class SearchResource(Strict):
    """Full-text search (OpenSearch in AWS, Postgres full-text locally)."""

    kind: Literal["search"]
    description: str = ""
    instance_type: str = "r6g.large.search"
    instances: int = Field(2, ge=1)


class Search(ResourceKind):
    kind = "search"
    model = SearchResource
    local_backing = frozenset({"postgres"})
    credential_url = True
    plan_secret = True
    vpc_port = 443
    product = "OpenSearch"
    consumer_verb = "index"
    database = True
    cdk_provision = "stackwright.resources.search:provision_cdk"
    cdk_grant = "stackwright.resources.search:grant_cdk"

    async def provision_local(self, name: str, res: SearchResource, ctx: LocalContext) -> str:
        from ..local.runner import ensure_database
        from ..runtime.db import database_url

        admin = ctx.backing["postgres"]["url"]
        db = f"{ctx.system.name}_{name}".replace("-", "_")
        await ensure_database(admin, db)
        return database_url(admin, db)

    def cost(self, name: str, res: SearchResource, ctx: CostContext) -> None:
        if ctx.is_primary:
            ctx.out.add("search", f"OpenSearch {name}: {res.instances} x {res.instance_type}",
                        f"opensearch.{res.instance_type}", res.instances * ctx.hours, "instance-hours",
                        discount="opensearch")

    def region_node(self, name: str, res: SearchResource, *, region: str,
                    primary: str) -> tuple[str, str, str] | None:
        if region != primary:
            return None
        return "data", f"OpenSearch {name}<br/>{res.instances} x {res.instance_type}", "box"

    def diagram_links(self, system: Any, service: str, name: str, res: SearchResource, *, region: str,
                      primary: str, workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        return [f"{workload} --> {prim}"]

    def az_loss(self, name: str, res: SearchResource) -> tuple[str, str]:
        # The CDK app turns on zone awareness when the domain has more than one node (and the VPC more than one AZ).
        if res.instances > 1:
            return f"OpenSearch {name}: its nodes there are lost, the others keep serving", ""
        return f"OpenSearch {name} (one node): down if its node was there, until replaced", ""

    def priced_instances(self, res: SearchResource) -> list[tuple[str, str, str, str]]:
        return [("opensearch", res.instance_type, "instance_type", "search instance type")]


def provision_cdk(stack: Any, name: str, res: SearchResource) -> None:
    """The OpenSearch domain in the VPC (its URL travels in each user's service secret)."""
    from ..deploy import names as naming
    from ..render.aws.constructs.search import SearchDomain

    system = stack.plan.system
    stack.search[name] = SearchDomain(
        stack, f"Search-{name}", spec=res, name=naming.search_domain_name(system, stack.plan.environment, name),
        network=stack.network, keys=stack.keys, clients=stack.cluster.security_group,
        log_retention_days=system.monitoring.log_retention_days, azs=system.network.azs)


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: SearchResource, secrets: list[str]) -> None:
    """HTTP access to the domain here, or to the primary region's domain."""
    from aws_cdk import aws_iam as iam

    from ..deploy import names as naming

    plan = stack.plan
    if plan.hosts(name, stack.region_spec.name):
        stack.search[name].grant(role)
        return
    domain = naming.search_domain_name(plan.system, plan.environment, name)
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"],
        resources=[stack.arn("es", plan.primary.name, f"domain/{domain}/*")]))


KIND: ResourceKind = Search()
