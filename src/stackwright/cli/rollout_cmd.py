"""``stackwright rollout``: rehearse a canary release on a running local system (stackwright.local.rollout)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from ..spec.quantities import seconds
from .common import console, fail, load


def _duration(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        out = seconds(value)
    except (ValueError, TypeError):
        out = -1.0
    if out <= 0:
        fail(f"{option} takes a duration such as 2s or 1m (got {value!r})")
    return out


def rollout(
    system: Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")],
    service: Annotated[str, typer.Argument(help="The service to release (its spec has rollout.strategy: canary).")],
    path: Annotated[Path, typer.Option("--path", help="Folder with the new version of the service's code.")],
    inject: Annotated[str | None, typer.Option(
        help="Make the new version bad, for rehearsing a rollback: error-rate=R (that share of requests answer "
             "500), latency-ms=N (every request N ms slower) or crash (exits at start). Sets "
             "STACKWRIGHT_REHEARSAL_FAULT on the canary's processes only.")] = None,
    interval: Annotated[str | None, typer.Option(
        help="Rehearsal override of the analysis interval (spec: rollout.analysis.interval), e.g. 2s.")] = None,
    pause: Annotated[str | None, typer.Option(
        help="Rehearsal override of every step's pause (spec: rollout.steps[].pause), e.g. 10s.")] = None,
    scrape_interval: Annotated[str | None, typer.Option(
        help="Rehearsal override of Prometheus' scrape interval while the rehearsal runs (default 5s).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result (steps, measurements, "
                                                                 "queries run) to this JSON file.")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", hidden=True,
                                                   help="Where local data lives (default .stackwright/).")] = None,
) -> None:
    """Rehearse SERVICE's canary release on SYSTEM, started with `stackwright up SYSTEM --monitoring`.

    Starts the new version beside the running one, has the gateway split the service's traffic by the spec's
    steps (setWeight/pause), and at every analysis interval runs the rendered AnalysisTemplate's own PromQL
    against the local Prometheus, with its failure and inconclusive limits. Ends promoted (exit 0), aborted on
    a failed gate or a canary that never becomes ready (exit 1), or paused because there was too little canary
    traffic to judge (exit 3). Either way all traffic is back on the running version and the canary stopped
    when it returns. Send the service traffic meanwhile (the rehearsal sends none): the analysis needs
    rollout.analysis.min_requests canary requests per window, else it pauses. See docs/rollout.md.
    """
    from ..local.rollout import Rehearsal, RehearsalOptions, RolloutError
    from ..runtime.faults import FaultSpecError, parse_fault  # the runtime package loads its web stack

    spec = load(system)
    if inject is not None:
        try:
            parse_fault(inject)
        except FaultSpecError as exc:
            fail(f"--inject: {exc}")
    if scrape_interval is not None:
        _duration("--scrape-interval", scrape_interval)
    options = RehearsalOptions(inject=inject, interval_s=_duration("--interval", interval),
                               pause_s=_duration("--pause", pause), scrape_interval=scrape_interval,
                               state_root=state_dir)
    try:
        rehearsal = Rehearsal(spec, service, path, options,
                              report=lambda line: console.print(line, markup=False, soft_wrap=True))
    except RolloutError as exc:
        fail(str(exc))
    result = asyncio.run(rehearsal.run())
    if json_out is not None:
        json_out.write_text(json.dumps(result.__dict__, indent=2, default=str) + "\n")
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add ``rollout`` to the CLI."""
    app.command()(rollout)
