"""Pub/sub events: Redis Streams locally, SNS in AWS (one topic per region).

Subscribers. ``subscribers:`` lists the services that consume the topic, each in its own consumer
group, so every subscriber sees every event once (fan-out) while the replicas of one subscriber share
the work. A subscriber must be a declared service that ``uses`` the topic.

* Wiring: every user gets ``<TOPIC>_TOPIC``, the topic's real name (the Redis stream key locally,
  ``<system>-<env>-<topic>`` on EKS, where ``<TOPIC>_URL`` is its ARN); a subscriber also gets
  ``<TOPIC>_GROUP``, its consumer group: ``<topic name>-<service>``, which on EKS is also the name of its
  own SQS queue (and ``<group>-dlq`` the queue's dead-letter queue).
* Local (Redis Streams): ``stackwright up`` creates each subscriber's group on the stream before the
  services start (:func:`create_groups`). Publish with ``XADD <TOPIC>_TOPIC * ...``; a subscriber reads with
  ``XREADGROUP GROUP <group> <replica id> ... >``, ``XACK``s after handling, and reclaims messages left
  pending by a dead replica with ``XAUTOCLAIM`` (after the visibility timeout it uses for queues).
* AWS: SNS topic -> one SQS queue per subscriber (raw message delivery, KMS-encrypted with the regional
  data key, a dead-letter queue after :data:`MAX_RECEIVE` receives), whose queue policy lets only that
  topic send to it. A subscriber's role may receive/delete on its own queue and DLQ only; publishing
  stays open to every user of the topic. The runtime consumes the queue like any ``queue`` resource.
* Plan: each subscriber queue (and its DLQ) is counted per region in the cost, its requests priced
  from ``monthly_messages_millions`` (SNS's delivery to SQS is free; SQS charges the send, the
  receive and the delete: :data:`SQS_REQUESTS_PER_MESSAGE`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..spec.errors import did_you_mean
from ..spec.strict import Strict
from .base import CostContext, Fail, LocalContext, ResourceKind

#: Receives of one event before the subscriber queue moves it to its dead-letter queue (the ``queue``
#: kind's default ``max_receive_count``).
MAX_RECEIVE = 5
#: SQS requests per delivered event: SNS's SendMessage, one ReceiveMessage and one DeleteMessage
#: (source: aws.amazon.com/sqs/pricing, "API actions"; batching only lowers it).
SQS_REQUESTS_PER_MESSAGE = 3
#: Longest SQS queue name (source: SQS developer guide, "Quotas related to queues").
SQS_NAME_MAX = 80


class TopicResource(Strict):
    """Pub/sub events (SNS in AWS, Redis Streams locally)."""

    kind: Literal["topic"]
    description: str = ""
    subscribers: list[str] = Field(
        default_factory=list,
        description="services that consume the topic, each in its own consumer group (its own SQS queue on "
                    "AWS); each must also list the topic in its uses")
    monthly_messages_millions: float = Field(
        0, ge=0, description="events published per month, in millions (prices the subscriber queues' requests)")

    @field_validator("subscribers")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a topic lists a subscriber twice")
        return v


def group_name(topic_name: str, service: str) -> str:
    """A subscriber's consumer group, and on AWS its SQS queue name: ``<topic name>-<service>``."""
    return f"{topic_name}-{service}"


def dlq_name(topic_name: str, service: str) -> str:
    """Dead-letter queue of a subscriber's SQS queue."""
    return f"{group_name(topic_name, service)}-dlq"


async def create_groups(url: str, stream: str, subscribers: list[str]) -> list[str]:
    """Create each subscriber's consumer group on the topic's stream (and the stream), before any service
    starts, so a subscriber that starts after a publisher still gets every event published since
    ``stackwright up``: a group made later at ``$`` would skip them. Existing groups keep their position.
    Returns the groups created now."""
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError

    made: list[str] = []
    # Timeouts: a Redis that stops answering fails `up` here instead of hanging it.
    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        for service in subscribers:
            group = group_name(stream, service)
            try:
                await client.xgroup_create(stream, group, id="$", mkstream=True)
                made.append(group)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group exists already: keep its position
                    raise
    finally:
        await client.aclose()
    return made


class Topic(ResourceKind):
    kind = "topic"
    model = TopicResource
    local_backing = frozenset({"redis"})
    plan_secret = True
    aws_api = False
    product = "SNS"
    consumer_verb = "publish"
    cdk_provision = "stackwright.resources.topic:provision_cdk"
    cdk_grant = "stackwright.resources.topic:grant_cdk"
    cdk_foundation = "stackwright.resources.topic:foundation_cdk"

    async def provision_local(self, name: str, res: TopicResource, ctx: LocalContext) -> str:
        url = str(ctx.backing["redis"]["url"])
        if res.subscribers:
            await create_groups(url, self.local_name(ctx.system, name), res.subscribers)
        return url

    def local_name(self, system: Any, name: str) -> str:
        return f"{system.name}-{name}"

    def check(self, system: Any, name: str, res: TopicResource, fail: Fail) -> None:
        longest = max(len(f"{system.name}-{env}-{name}") for env in system.environments)
        for i, sub in enumerate(res.subscribers):
            loc = ("resources", name, "subscribers", i)
            svc = system.services.get(sub)
            if svc is None:
                raise fail(f"topic '{name}' lists subscriber '{sub}', which is not a declared service", loc,
                           did_you_mean(sub, system.services, listed="declared"))
            if name not in svc.uses:
                raise fail(f"topic '{name}' lists subscriber '{sub}', but service '{sub}' does not use it", loc,
                           f"add {name} to services.{sub}.uses")
            if longest + len(dlq_name("", sub)) > SQS_NAME_MAX:
                raise fail(f"subscriber queue of '{sub}' on topic '{name}' would exceed SQS's {SQS_NAME_MAX} "
                           "characters", loc, "use a shorter system, topic or service name")

    def env(self, name: str, res: TopicResource, *, real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        return {resource_env(name, "TOPIC"): real_name} if real_name else {}

    def service_env(self, system: Any, service: str, name: str, res: TopicResource, *,
                    real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        if service not in res.subscribers or real_name is None:
            return {}
        return {resource_env(name, "GROUP"): group_name(real_name, service)}

    def regional(self, res: TopicResource) -> bool:
        return True

    def eks_url(self, system: Any, environment: str, name: str, res: TopicResource, *, region: str,
                hosted: str) -> str:
        from ..deploy import names as naming

        return naming.topic_arn(system, environment, name, region)

    def eks_name(self, system: Any, environment: str, name: str, res: TopicResource) -> str:
        # The same name render/aws gives the SNS topic (``<system>-<env>-<topic>``).
        return f"{system.name}-{environment}-{name}"

    def cost(self, name: str, res: TopicResource, ctx: CostContext) -> None:
        if not res.subscribers:
            return
        n = len(res.subscribers)
        requests = res.monthly_messages_millions * ctx.share * n * SQS_REQUESTS_PER_MESSAGE
        note = (f"{SQS_REQUESTS_PER_MESSAGE} SQS requests per event per subscriber (send, receive, delete)"
                if res.monthly_messages_millions else
                f"resources.{name}.monthly_messages_millions not set: no requests priced")
        ctx.out.add("messaging", f"SQS {name} subscriptions: {n} queue(s) + {n} DLQ(s) "
                                 f"({', '.join(res.subscribers)})",
                    "sqs.standard_million", requests, "million requests", assumption=note)

    def shared_node(self, name: str, res: TopicResource) -> tuple[str, str, str] | None:
        subs = f"<br/>-> SQS per subscriber: {', '.join(res.subscribers)}" if res.subscribers else ""
        return "SNS_", f"SNS {name}{subs}", "box"

    def diagram_links(self, system: Any, service: str, name: str, res: TopicResource, *, region: str,
                      primary: str, workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        return [f"{workload} --> {shared}"]


def provision_cdk(stack: Any, name: str, res: TopicResource) -> None:
    """The SNS topic and one SQS queue (with its DLQ) per subscriber."""
    from ..deploy import names as naming
    from ..render.aws.constructs.topics import Topic as TopicConstruct

    topic_name = naming.topic_name(stack.plan.system, stack.plan.environment, name)
    stack.topics[name] = TopicConstruct(
        stack, f"Topic-{name}", spec=res, name=topic_name, key=stack.keys.data,
        subscribers={s: (group_name(topic_name, s), dlq_name(topic_name, s)) for s in res.subscribers})


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: TopicResource, secrets: list[str]) -> None:
    """Publish for every user; receive/delete on its own subscriber queue for a subscriber."""
    stack.topics[name].grant(role, service)


def foundation_cdk(stack: Any, name: str, res: TopicResource) -> None:
    """SNS may encrypt deliveries into the subscriber queues with the region's data key (once per key)."""
    from ..render.aws.constructs.topics import allow_sns

    if res.subscribers and "sns" not in stack.data_key_services:
        stack.data_key_services.add("sns")
        allow_sns(stack.keys.data, stack.account)


KIND: ResourceKind = Topic()
