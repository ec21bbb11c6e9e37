"""``stackwright drill region-failover``: lose the primary region while writes flow; measure RTO and RPO.

``--scope region`` (the default) runs the whole system in every region and loses every process of the primary
region under load through the global entry (:mod:`stackwright.local.region_outage`); ``--scope database``
kills the primary region's Postgres only, with a direct database client; both fail back afterwards
(:mod:`stackwright.local.region_drill`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..local.state import system_dir
from .common import console, fail, load
from .local_cmds import StateDir

if TYPE_CHECKING:
    from ..local.region_drill import FailoverResult

drill_app = typer.Typer(help="Disaster-recovery drills on a private local copy of a system's regions.",
                        no_args_is_help=True)

SystemArg = Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")]

#: Where a drill's last result is kept (under the system's local folder); ``plan`` reads it.
RESULT_FILE = Path("drills") / "region-failover.json"


class Scope(StrEnum):
    region = "region"
    database = "database"


class Commit(StrEnum):
    spec = "spec"
    sync = "sync"
    async_ = "async"


def result_path(spec: Any, state_dir: Path | None) -> Path:
    """Where the last region-failover result of ``spec`` is recorded."""
    return system_dir(spec, state_dir) / RESULT_FILE


@drill_app.command("region-failover")
def region_failover(
    system: SystemArg,
    scope: Annotated[Scope, typer.Option(
        help="region: the whole system in every region, every process of the primary region killed, clients "
             "through the global entry; database: the regions' Postgres only, with fail-back.")] = Scope.region,
    commit: Annotated[Commit, typer.Option(
        help="Replication commit mode: sync (a commit waits for one standby), async, or spec (sync when "
             "slo.rpo_seconds is 0, else async).")] = Commit.spec,
    interval: Annotated[float | None, typer.Option(
        help="Health-check interval in seconds (default: the spec's edge.health_check_interval_s).", min=0.05)] = None,
    threshold: Annotated[int | None, typer.Option(
        help="Failed checks before a region is down (default: edge.health_check_failure_threshold).", min=1)] = None,
    rate: Annotated[float | None, typer.Option(
        help="Writes per second while the region fails (default: the system's RegionLoad.RATE for the region "
             "scope, 50 for the database scope).", min=0.5)] = None,
    failback: Annotated[bool, typer.Option(
        help="Rebuild the lost primary region as a replica of the promoted one and switch back afterwards "
             "(a planned switchover, under the load).")] = True,
    keep: Annotated[bool, typer.Option(help="Keep the drill's data folders afterwards.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result to this JSON file.")] = None,
    state_dir: StateDir = None,
) -> None:
    """Lose the primary region while writes flow (region scope: every process of it, the system's own writes
    through the global entry; database scope: its Postgres, direct writes), detect it with the spec's health
    checks, promote the most advanced replica, repoint the writers, and measure RTO (first failed to first
    acknowledged write), RPO (acknowledged writes missing, against the client's ledger) and failed writes; then
    fail back (both scopes; --no-failback skips it): the old primary is rebuilt as a replica of the promoted one
    (pg_rewind, else a fresh base backup) and a planned switchover hands the role back without losing writes.
    A private copy on free ports: a running copy of the system is not touched. Exits 1 if an SLO or invariant fails."""
    spec = load(system)
    regions = [spec.primary_region.name] + [r.name for r in spec.regions if r.role != "primary"]
    if len(regions) < 2:
        fail(f"{spec.name} has one region; a region failover needs a second one (regions: in the spec)")
    mode = commit.value if commit is not Commit.spec else ("sync" if spec.slo.rpo_seconds == 0 else "async")
    # Imported here: the drills pull in the runtime's web stack, which every other command can do without.
    from ..local.region_drill import DrillError, run_failover
    from ..local.region_outage import run_region_outage

    root = system_dir(spec, state_dir) / "drills" / f"region-failover-{int(time.time())}"

    def say(message: str) -> None:
        console.print(f"  {message}", highlight=False)

    try:
        if scope is Scope.region:
            result = asyncio.run(run_region_outage(spec, root, commit=mode, rate=rate,  # type: ignore[arg-type]
                                                   interval_s=interval, threshold=threshold, failback=failback,
                                                   report=say))
        else:
            result = asyncio.run(run_failover(
                root, regions, commit=mode,  # type: ignore[arg-type]
                interval_s=interval if interval is not None else float(spec.edge.health_check_interval_s),
                threshold=threshold if threshold is not None else int(spec.edge.health_check_failure_threshold),
                rate=rate or 50.0, failback=failback, slo_rto_s=spec.slo.rto_minutes * 60,
                slo_rpo_s=spec.slo.rpo_seconds, report=say))
    except DrillError as exc:
        keep = True  # the logs of what failed are the point now
        fail(f"region failover drill: {exc}{_kept(root)}")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    record = {**result.to_dict(), "system": spec.name, "at": time.time()}
    path = result_path(spec, state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    if json_out is not None:
        json_out.write_text(json.dumps(record, indent=2))
    ok = _print(result)
    from ..plan.failure import DRILL_RELATIVE  # the planner's package: a second every other command skips

    console.print(f"result recorded in {path}; `stackwright plan` shows the one in "
                  f"{DRILL_RELATIVE.format(name=spec.name)} next to the computed RTO/RPO (--json that path)")
    if not ok:
        raise typer.Exit(1)


@drill_app.command("region-partition")
def region_partition(
    system: SystemArg,
    region: Annotated[str | None, typer.Option(
        help="The region to cut off (default: the first secondary region, else the first non-primary one).")] = None,
    seconds: Annotated[float, typer.Option(help="How long the partition lasts.", min=1.0)] = 10.0,
    interval: Annotated[float | None, typer.Option(
        help="Health-check interval in seconds (default: the spec's edge.health_check_interval_s).", min=0.05)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result to this JSON file.")] = None,
    state_dir: StateDir = None,
) -> None:
    """Cut one region off from the primary at the network level (its link to the writable Postgres, which its
    replica's WAL stream and its services' writes go through, resets and refuses connections) while the
    system's own writes flow through the primary region: its reads must stay served (stale), its lag reported
    and growing, its writes refused with problem+json and none acknowledged and lost; then heal and measure the
    catch-up. A private copy on free ports. Exits 1 if an invariant fails."""
    from ..local.region_drill import DrillError
    from ..local.region_partition import run_partition

    spec = load(system)
    root = system_dir(spec, state_dir) / "drills" / f"region-partition-{int(time.time())}"

    def say(message: str) -> None:
        console.print(f"  {message}", highlight=False)

    try:
        result = asyncio.run(run_partition(spec, root, region=region, seconds=seconds, interval_s=interval,
                                           report=say))
    except DrillError as exc:
        fail(f"region partition drill: {exc}{_kept(root)}")
    shutil.rmtree(root, ignore_errors=True)
    record = {**result.to_dict(), "system": spec.name, "at": time.time()}
    if json_out is not None:
        json_out.write_text(json.dumps(record, indent=2))
    if not _verdicts(result.verdicts()):
        raise typer.Exit(1)


def _kept(root: Path) -> str:
    """' (data kept in ROOT)' when a failed drill left its folder for the logs, else '' (it failed before
    making anything, e.g. on a bad argument)."""
    return f" (data kept in {root})" if root.exists() else ""


def _verdicts(verdicts: list[tuple[str, bool]]) -> bool:
    """Print each (what, met) verdict; True when all are met."""
    for what, met in verdicts:
        console.print(f"  {'[green]ok[/]' if met else '[red]FAILED[/]'}  {what}", highlight=False)
    return all(met for _what, met in verdicts)


def _print(result: FailoverResult) -> bool:
    table = Table(title=f"region failover ({result.scope} scope): {result.killed} -> {result.promoted} "
                        f"({result.commit} commit)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("health checks", f"{result.health_check_failure_threshold} x {result.health_check_interval_s:g} s"),
        ("detected after", f"{result.detected_after_s:.2f} s"),
        ("RTO (first failed -> first acknowledged write)",
         "never recovered" if result.rto_s is None else f"{result.rto_s:.2f} s"),
        ("failed writes during the gap", str(result.failed_writes)),
        *([("processes killed", str(len(result.killed_processes)))] if result.killed_processes else []),
        ("ambiguous writes (no answer; not counted as acknowledged)", str(result.ambiguous_writes)),
        ("standby lag at the kill (bytes)", ", ".join(f"{r} {b}" for r, b in result.lag_bytes_at_kill.items())),
        ("RPO: acknowledged writes lost", f"{result.lost_acked} of {result.acked_before_kill}"),
        ("RPO: time span of the lost writes", f"{result.lost_span_s:.2f} s"),
    ]
    rows += [(f"{region} rebuilt to follow {result.promoted}",
              f"{how}; {result.refollow_missing.get(region, '?')} acknowledged writes missing")
             for region, how in result.refollowed.items()]
    if result.failback:
        rows += [("fail-back", result.failback.split(" (")[0]),
                 ("writes paused for the switch back", f"{result.failback_pause_s or 0:.2f} s"),
                 *([("switch-back write gap (last acknowledged before -> first after)",
                     f"{result.failback_gap_s:.2f} s")] if result.failback_gap_s is not None else []),
                 *([("requests failed during the fail-back", str(result.failback_failed_writes))]
                   if result.failback_failed_writes is not None else []),
                 ("acknowledged writes lost by the fail-back", str(result.lost_after_failback))]
    rows.append(("writes acknowledged in all", str(result.acked_total)))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return _verdicts(result.verdicts())


def register(app: typer.Typer) -> None:
    """Add ``stackwright drill`` to the CLI."""
    app.add_typer(drill_app, name="drill")
