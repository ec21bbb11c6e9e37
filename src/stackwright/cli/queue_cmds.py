"""``stackwright queue``: look into a running system's queues; list and redrive dead-lettered messages."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..local.control import running_state
from ..resources import kind_of
from ..resources.topic import MAX_RECEIVE, group_name
from ..spec import System
from .common import console, fail, load

queue_app = typer.Typer(help="Inspect a running system's queues and their dead-letter queues.",
                        no_args_is_help=True)

SystemArg = Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")]


@queue_app.command("dlq")
def dlq(
    system: SystemArg,
    queue: Annotated[str | None, typer.Option(
        help="Only this queue resource, or one topic subscription as TOPIC/SERVICE (default: all of them).")] = None,
    redrive: Annotated[bool, typer.Option("--redrive", help="Move the DLQ messages back onto their queue.")] =
        False,
    limit: Annotated[int, typer.Option(help="List at most this many messages per queue.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")] = False,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", hidden=True)] = None,
) -> None:
    """List dead-lettered messages of each queue resource and of each topic subscriber's queue (TOPIC/SERVICE;
    SQS behind SNS on AWS) (--redrive moves them back)."""
    spec = load(system)
    queues = _dead_lettering(spec)
    if queue is not None:
        if queue not in queues:
            fail(f"{spec.name} has no queue {queue!r} (queues: {', '.join(queues) or 'none'})")
        queues = {queue: queues[queue]}
    if not queues:
        fail(f"{spec.name} has no queues or topic subscribers")
    state = running_state(spec, state_dir)
    if state is None:
        fail(f"{spec.name} is not running (start it with 'stackwright up {spec.name} -d')")
    report = asyncio.run(_inspect(spec.name, state, queues, redrive=redrive, limit=max(1, limit)))
    if as_json:
        print(json.dumps({"system": spec.name, "queues": report}, indent=2))
        return
    for name, info in report.items():
        table = Table(title=f"{spec.name}: DLQ of '{name}' ({info['dlq_depth']} message(s))")
        for col in ("id", "deliveries", "body"):
            table.add_column(col)
        for m in info["messages"]:
            body = json.dumps(m["body"])
            table.add_row(m["id"], str(m["receive_count"]), body if len(body) <= 100 else body[:97] + "…")
        console.print(table)
        if redrive and "not_redriven" in info:
            console.print(f"not redriven: {info['not_redriven']}")
        elif redrive:
            console.print(f"redrove {info['redriven']} message(s) from the DLQ back onto '{name}'")


@dataclass(frozen=True)
class _Dlq:
    """Where one dead-letter queue is: the resource, and for a topic subscriber its stream and group."""

    resource: str
    max_receive_count: int
    stream: str | None = None  # the topic's stream (a subscriber's queue reads it through its group)
    group: str | None = None


def _dead_lettering(spec: System) -> dict[str, _Dlq]:
    """Every queue with a dead-letter queue: queue resources by name, topic subscribers as TOPIC/SERVICE."""
    out: dict[str, _Dlq] = {}
    for name, res in spec.resources.items():
        kind = kind_of(res)
        if kind.dead_letters:
            out[name] = _Dlq(name, res.max_receive_count)
        elif res.kind == "topic":
            stream = kind.local_name(spec, name)
            for service in res.subscribers:
                out[f"{name}/{service}"] = _Dlq(name, MAX_RECEIVE, stream, group_name(stream, service))
    return out


async def _inspect(system: str, state: dict[str, Any], queues: dict[str, _Dlq], *, redrive: bool,
                   limit: int) -> dict[str, Any]:
    # Imported here, not at the top: the runtime package loads its web stack (fastapi, asyncpg, ...), seconds
    # that every other command (``up`` refusing a running system, ``--help``) paid for nothing.
    from ..runtime.queue import QueueError, queue_from_url
    from ..runtime.queue.redis_streams import RedisStreamsQueue

    out: dict[str, Any] = {}
    for name, where in queues.items():
        url = state.get("resources", {}).get(where.resource)
        if not url:
            fail(f"the running {system} has no URL for {where.resource!r} (restart it)")
        if where.group is None:
            q = queue_from_url(url, f"{system}-{name}", max_receive_count=where.max_receive_count)
        else:
            # The subscriber's own queue, as its service opens it (stackwright.runtime.topic.Topic.subscription).
            q = RedisStreamsQueue(url, where.group, stream=where.stream, group=where.group,
                                  max_receive_count=where.max_receive_count)
        try:
            messages = await q.dlq_messages(limit=limit)
            info: dict[str, Any] = {
                "queue": where.group or f"{system}-{name}", "dlq_depth": await q.dlq_depth(),
                "messages": [{"id": m.id, "receive_count": m.receive_count, "body": m.body} for m in messages],
            }
            if redrive:
                try:
                    info["redriven"] = await q.redrive()
                except QueueError as exc:
                    info["redriven"], info["not_redriven"] = 0, str(exc)
        finally:
            await q.close()
        out[name] = info
    return out


def register(app: typer.Typer) -> None:
    """Add ``stackwright queue ...`` to the CLI."""
    app.add_typer(queue_app, name="queue")
