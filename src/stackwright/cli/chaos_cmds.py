"""``stackwright chaos``: fault drills on a private local copy of a system (kill -9 while traffic flows)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import term
from ..local.chaos import (
    DRILL_VISIBILITY_TIMEOUT_S,
    ChaosError,
    check_faults,
    drill_up_args,
    render_table,
    scenario_class,
    scenario_for,
)
from ..local.control import ControlError, start_detached, stop
from ..local.ports import free_port
from .common import console, fail, load, require_system_extras

SystemArg = Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")]


def chaos(
    system: SystemArg,
    faults: Annotated[str | None, typer.Option(
        help="Comma-separated processes to kill -9, in this order (default: every fault the system's drills know).")]
        = None,
    rate: Annotated[float, typer.Option(
        help="Load while the faults happen: requests per second (open loop), or what the system's drills.py "
             "reads it as (its README says; streaming systems: clients).")] = 40.0,
    poison: Annotated[bool, typer.Option(help="Also drill poison messages: DLQ after N deliveries, redrive.")] = True,
    visibility_timeout: Annotated[float, typer.Option(
        help="Queue visibility timeout (s) for the drill run, so redeliveries take seconds.")] =
        DRILL_VISIBILITY_TIMEOUT_S,
    keep: Annotated[bool, typer.Option(help="Leave the drill's system running (and its data) afterwards.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results to this JSON file.")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", hidden=True,
                                                   help="Where the drill's copy keeps its data.")] = None,
) -> None:
    """Kill each process with SIGKILL while requests flow; check nothing acknowledged is lost or counted twice.

    The drills are the system's drills.py plug-in. Runs its own copy of the system (fresh data, free port,
    short queue visibility timeout) so it never disturbs one you are using. Exits 1 if anything acknowledged
    is lost or duplicated.
    """
    if rate <= 0:
        fail("--rate must be > 0")
    if visibility_timeout <= 0:
        fail("--visibility-timeout must be > 0")
    spec = load(system)
    require_system_extras(spec)
    try:
        fault_list = ([f.strip() for f in faults.split(",") if f.strip()] if faults is not None
                      else list(scenario_class(spec).FAULTS))
        check_faults(spec, fault_list)
    except ChaosError as exc:
        fail(str(exc))
    root = state_dir or Path(tempfile.mkdtemp(prefix=f"stackwright-chaos-{spec.name}-"))
    try:
        state = start_detached(spec.source, port=free_port(), state_root=root,
                               extra_args=drill_up_args(spec, visibility_timeout), on_step=console.print)
    except ControlError as exc:
        fail(str(exc))
    console.print(f"[bold]{spec.name}[/] is up for the drill at {state['gateway']} (data in {root})")
    try:
        rows, poisoned = asyncio.run(_drill(spec, state, root, fault_list, rate, poison))
    except ChaosError as exc:
        fail(str(exc))
    finally:
        if keep:
            console.print(f"left running; stop it with: stackwright down {spec.name} --state-dir {root}")
        else:
            stop(spec.name, root)
            if state_dir is None:
                shutil.rmtree(root, ignore_errors=True)
    out = term.console(min_width=130)
    out.print(render_table(rows))
    for row in rows:
        if row.note:
            out.print(f"  {row.fault}: {row.note}")
    ok = all(r.ok for r in rows)
    if poisoned is not None:
        out.print(f"poison messages: dead-lettered after {poisoned['dead_lettered_s']:.1f}s with receive counts "
                  f"{poisoned['dead_lettered']} (max_receive_count {poisoned['max_receive_count']}); "
                  f"after fixing the missing poll and redriving: "
                  f"{'counted' if poisoned.get('counted_after_redrive') else 'NOT counted'}")
        ok = ok and poisoned["ok"]
    if json_out is not None:
        json_out.write_text(json.dumps({"faults": [r.as_dict() for r in rows], "poison": poisoned, "ok": ok},
                                       indent=2, default=str) + "\n")
    lost = sum(r.lost for r in rows)
    dup = sum(r.duplicated for r in rows)
    out.print(f"[bold {'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/]: "
              f"{sum(r.acknowledged for r in rows)} acknowledged, {lost} lost, {dup} duplicated")
    if not ok:
        raise typer.Exit(1)


async def _drill(spec: Any, state: dict[str, Any], root: Path, faults: list[str], rate: float,
                 poison: bool) -> tuple[list[Any], dict[str, Any] | None]:
    scenario = scenario_for(spec, state, root)
    rows = await scenario.run(faults, rate=rate, report=console.print)
    poisoned = await scenario.poison(console.print) if poison and hasattr(scenario, "poison") else None
    return rows, poisoned


def register(app: typer.Typer) -> None:
    """Add ``stackwright chaos`` to the CLI."""
    app.command()(chaos)
