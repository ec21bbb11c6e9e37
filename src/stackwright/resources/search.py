"""Full-text search: a Postgres database (full-text) locally, OpenSearch in AWS."""

from __future__ import annotations

from typing import Literal

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


KIND: ResourceKind = Search()
