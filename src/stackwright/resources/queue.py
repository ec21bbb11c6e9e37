"""Durable queues: Redis Streams locally, SQS (with a dead-letter queue) in AWS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from ..spec.quantities import seconds
from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind

#: Messages per second a FIFO queue takes: 300 API calls/s x 10-message batches (SQS quotas).
SQS_FIFO_MSGS = 3_000.0


class QueueResource(Strict):
    kind: Literal["queue"]
    description: str = ""
    fifo: bool = False
    dlq: bool = True
    max_receive_count: int = Field(5, ge=1, le=1000)
    visibility_timeout: str = "30s"
    retention: str = "4d"
    per_region: bool = True
    monthly_requests_millions: float = Field(0, ge=0)

    @field_validator("visibility_timeout", "retention")
    @classmethod
    def _dur(cls, v: str) -> str:
        seconds(v)
        return v


class Queue(ResourceKind):
    kind = "queue"
    model = QueueResource
    local_backing = frozenset({"redis"})
    dead_letters = True
    aws_api = True  # the sqs interface endpoint serves it
    product = "SQS"
    consumer_verb = "send"
    request_verb = "send message"
    cdk_provision = "stackwright.resources.queue:provision_cdk"
    cdk_grant = "stackwright.resources.queue:grant_cdk"

    async def provision_local(self, name: str, res: QueueResource, ctx: LocalContext) -> str:
        return str(ctx.backing["redis"]["url"])

    def local_name(self, system: Any, name: str) -> str:
        return f"{system.name}-{name}"

    def env(self, name: str, res: QueueResource, *, real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        assert real_name is not None, f"queue {name} has no real name"
        env = {resource_env(name, "QUEUE"): real_name,
               resource_env(name, "MAX_RECEIVE"): str(res.max_receive_count),
               resource_env(name, "VISIBILITY_TIMEOUT"): str(int(seconds(res.visibility_timeout)))}
        if res.fifo:  # SQS refuses FIFO sends without a message group: the runtime must know
            env[resource_env(name, "FIFO")] = "true"
        return env

    def regional(self, res: QueueResource) -> bool:
        return res.per_region

    def eks_url(self, system: Any, environment: str, name: str, res: QueueResource, *, region: str,
                hosted: str) -> str:
        return f"sqs://?region={hosted}"

    def eks_name(self, system: Any, environment: str, name: str, res: QueueResource) -> str:
        from ..deploy import names as naming

        return naming.queue_name(system, environment, name)

    def cost(self, name: str, res: QueueResource, ctx: CostContext) -> None:
        if not (res.per_region or ctx.is_primary):
            return
        q_share = ctx.share if res.per_region else 1.0
        kind = "fifo" if res.fifo else "standard"
        note = "" if res.monthly_requests_millions else (
            f"resources.{name}.monthly_requests_millions not set: no requests priced")
        ctx.out.add("messaging", f"SQS {name} ({kind}) requests", f"sqs.{kind}_million",
                    res.monthly_requests_millions * q_share, "million requests", assumption=note)

    def region_node(self, name: str, res: QueueResource, *, region: str,
                    primary: str) -> tuple[str, str, str] | None:
        if not (res.per_region or region == primary):
            return None
        return "regional", f"SQS {name}{' FIFO' if res.fifo else ''}" + (" + DLQ" if res.dlq else ""), "box"

    def diagram_links(self, system: Any, service: str, name: str, res: QueueResource, *, region: str,
                      primary: str, workload: str, local: str, prim: str, shared: str | None) -> list[str]:
        target = local if (res.per_region or region == primary) else prim
        if service in self.consumed_by(system, name, res):
            return [f"{target} -->|consume| {workload}"]
        return [f"{workload} --> {target}"]

    def consumed_by(self, system: Any, name: str, res: QueueResource) -> list[str]:
        from ..plan.capacity import queue_consumers

        return queue_consumers(system, name)

    def sequence_ack(self, system: Any, name: str, res: QueueResource) -> str:
        return "delete (ack)" + (f", or to the DLQ after {res.max_receive_count} failed receives" if res.dlq else "")

    def recovery(self, system: Any, name: str, res: QueueResource, *, detect_s: float) -> Any:
        from ..plan.model import StoreRecovery

        # SQS stores each message in several AZs before the send is acknowledged.
        return StoreRecovery(name, "queue", "sqs-fifo" if res.fifo else "sqs", "SQS stores each message in several AZs",
                             "none needed within a region", 0.0, 0.0, 0.0, "0 (stored before the send returns)",
                             "messages in the failed region's queue wait until it returns (within retention "
                             f"{res.retention}); lost if it never does")

    def az_loss(self, name: str, res: QueueResource) -> tuple[str, str]:
        return "", f"none for queue {name} (SQS stores each message in several AZs)"

    def failure_scenarios(self, system: Any, name: str, res: QueueResource, *, detect_s: float) -> list[Any]:
        from ..plan.model import FailureScenario

        return [FailureScenario(f"queue {name} is unavailable",
                                "producers cannot enqueue (they should answer 503 and clients retry); "
                                "consumers idle", "SQS API errors",
                                "SQS is regional and multi-AZ; it recovers on its own",
                                "none for acknowledged messages; failed messages go to the DLQ after "
                                f"{res.max_receive_count} receives" if res.dlq else
                                "none for acknowledged messages; poison messages retry forever (no DLQ)")]

    def legend_row(self, system: Any, name: str, res: QueueResource, *, regions: list[str],
                   primary: str) -> tuple[str, dict[str, str]]:
        text = f"FIFO {SQS_FIFO_MSGS:,.0f} msg/s (batched)" if res.fifo else "Unlimited"
        return f"SQS Throughput ({name})", {r: text if res.per_region or r == primary else f"none: uses {primary}"
                                            for r in regions}

    def limit_checks(self, system: Any, name: str, res: QueueResource, *, region: str,
                     demand: Mapping[str, tuple[float, str]]) -> tuple[list[Any], list[Any]]:
        from ..plan.capacity import queue_producers
        from ..plan.model import Finding, LimitCheck

        if not (res.per_region or region == system.primary_region.name):
            return [], []
        rate = sum(demand[p][0] for p in queue_producers(system, name))
        limit = SQS_FIFO_MSGS if res.fifo else None
        check = LimitCheck(region, f"SQS {name}", limit, "msg/s", rate,
                           "FIFO: 300 API calls/s x 10-message batches" if res.fifo
                           else "standard queue: nearly unlimited throughput")
        if not (limit and rate > limit):
            return [check], []
        return [check], [Finding("high", "capacity",
                                 f"FIFO queue {name} in {region} gets {rate:,.0f} msg/s; FIFO allows "
                                 f"~{limit:,.0f} msg/s", f"resources.{name}.fifo",
                                 "use a standard queue with idempotent consumers or high-throughput FIFO")]

    def cost_findings(self, system: Any, name: str, res: QueueResource) -> list[Any]:
        from ..plan.model import Finding

        if res.monthly_requests_millions or not self.consumed_by(system, name, res):
            return []
        return [Finding("low", "cost", f"queue {name} has no monthly_requests_millions, so its "
                        "requests are not priced", f"resources.{name}.monthly_requests_millions",
                        "estimate ~3 requests (send, receive, delete) per message")]

    def missing_alert(self, name: str, res: QueueResource) -> tuple[str, str, str]:
        return "queue", f"queue {name} has no backlog/DLQ alert", "render queue depth and DLQ alerts"


def provision_cdk(stack: Any, name: str, res: QueueResource) -> None:
    """The SQS queue and its dead-letter queue, encrypted with the region's data key."""
    from ..deploy import names as naming
    from ..render.aws.constructs.queues import Queue as QueueConstruct

    system, env = stack.plan.system, stack.plan.environment
    stack.queues[name] = QueueConstruct(
        stack, f"Queue-{name}", spec=res, name=naming.queue_name(system, env, name),
        dlq_name=naming.queue_name(system, env, name, dlq=True), key=stack.keys.data)


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: QueueResource, secrets: list[str]) -> None:
    """Send, receive and delete on the queue (and its DLQ) here, or on the primary region's copy."""
    from aws_cdk import aws_iam as iam

    from ..deploy import names as naming

    plan, system, env = stack.plan, stack.plan.system, stack.plan.environment
    if plan.hosts(name, stack.region_spec.name):
        stack.queues[name].grant(role)
        return
    names = [naming.queue_name(system, env, name), naming.queue_name(system, env, name, True)]
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                 "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
        resources=[stack.arn("sqs", plan.primary.name, n) for n in names]))
    stack.remote_key(role, plan.primary.name)


KIND: ResourceKind = Queue()
