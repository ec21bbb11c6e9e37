"""Pub/sub events: Redis Streams locally, SNS in AWS (one topic per region)."""

from __future__ import annotations

from typing import Any, Literal

from ..spec.strict import Strict
from .base import LocalContext, ResourceKind


class TopicResource(Strict):
    """Pub/sub events (SNS in AWS, Redis Streams locally)."""

    kind: Literal["topic"]
    description: str = ""


class Topic(ResourceKind):
    kind = "topic"
    model = TopicResource
    local_backing = frozenset({"redis"})
    plan_secret = True
    aws_api = False
    product = "SNS"
    consumer_verb = "publish"

    async def provision_local(self, name: str, res: TopicResource, ctx: LocalContext) -> str:
        return str(ctx.backing["redis"]["url"])

    def regional(self, res: TopicResource) -> bool:
        return True

    def eks_url(self, system: Any, environment: str, name: str, res: TopicResource, *, region: str,
                hosted: str) -> str:
        from ..deploy import names as naming

        return naming.topic_arn(system, environment, name, region)

    def shared_node(self, name: str, res: TopicResource) -> tuple[str, str, str] | None:
        return "SNS_", f"SNS {name}", "box"


KIND: ResourceKind = Topic()
