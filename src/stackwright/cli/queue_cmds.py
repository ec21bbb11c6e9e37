"""``stackwright queue``: look into a running system's queues; list and redrive dead-lettered messages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..local.control import running_state
from ..resources import kind_of
from ..runtime.queue import queue_from_url
from .common import console, fail, load

queue_app = typer.Typer(help="Inspect a running system's queues and their dead-letter queues.",
                        no_args_is_help=True)

SystemArg = Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")]


@queue_app.command("dlq")
def dlq(
    system: SystemArg,
    queue: Annotated[str | None, typer.Option(help="Only this queue resource (default: every queue).")] = None,
    redrive: Annotated[bool, typer.Option("--redrive", help="Move the DLQ messages back onto their queue.")] =
        False,
    limit: Annotated[int, typer.Option(help="List at most this many messages per queue.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")] = False,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", hidden=True)] = None,
) -> None:
    """List dead-lettered messages of each queue resource (``--redrive`` moves them back)."""
    spec = load(system)
    queues = {n: r for n, r in spec.resources.items() if kind_of(r).dead_letters}
    if queue is not None:
        if queue not in queues:
            fail(f"{spec.name} has no queue {queue!r} (queues: {', '.join(queues) or 'none'})")
        queues = {queue: queues[queue]}
    if not queues:
        fail(f"{spec.name} has no queue resources")
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
        if redrive:
            console.print(f"redrove {info['redriven']} message(s) from the DLQ back onto '{name}'")


async def _inspect(system: str, state: dict[str, Any], queues: dict[str, Any], *, redrive: bool,
                   limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, res in queues.items():
        url = state.get("resources", {}).get(name)
        if not url:
            fail(f"the running {system} has no URL for queue {name!r} (restart it)")
        q = queue_from_url(url, f"{system}-{name}", max_receive_count=res.max_receive_count)
        try:
            messages = await q.dlq_messages(limit=limit)
            info: dict[str, Any] = {
                "queue": f"{system}-{name}", "dlq_depth": await q.dlq_depth(),
                "messages": [{"id": m.id, "receive_count": m.receive_count, "body": m.body} for m in messages],
            }
            if redrive:
                info["redriven"] = await q.redrive()
        finally:
            await q.close()
        out[name] = info
    return out


def register(app: typer.Typer) -> None:
    """Add ``stackwright queue ...`` to the CLI."""
    app.add_typer(queue_app, name="queue")
