"""Durable queues: Redis Streams locally, SQS (with a dead-letter queue) in AWS."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..spec.quantities import seconds
from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind


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
    aws_api = True  # the sqs interface endpoint serves it
    product = "SQS"
    consumer_verb = "send"
    request_verb = "send message"

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


KIND: ResourceKind = Queue()
