"""``stackwright plan SYSTEM --out DIR``: write the architecture document computed from the spec."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .common import console, fail, load


class Format(StrEnum):
    """Output formats: Markdown only, or Markdown plus the same data as JSON."""

    md = "md"
    json = "json"


def plan(
    system: Annotated[str, typer.Argument(help="System name (systems/<name>) or path to a system.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write ARCHITECTURE.md (and .json) into.")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="md: ARCHITECTURE.md; json: also architecture.json.")]
    = Format.md,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any finding is high severity.")] = False,
    environment: Annotated[str | None, typer.Option("--environment", "-e",
                                                    help="Environment to plan (default: prod, else the last).")]
    = None,
    bench: Annotated[Path | None, typer.Option("--bench", help="Benchmark results file (default: "
                                               "bench/per_replica.json in the cwd or above the spec).")] = None,
    svg: Annotated[bool, typer.Option("--svg/--no-svg", help="Render SVGs with mmdc when it is installed.")] = True,
) -> None:
    """Write the architecture document: diagrams, capacity, cost, failure analysis and findings."""
    from ..plan import PlanError, build_plan, has_high, write_plan

    spec = load(system)
    try:
        result = build_plan(spec, environment, bench_file=bench)
        written = write_plan(result, out, fmt.value, svg=svg)
    except PlanError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    counts = ", ".join(f"{result.count(s)} {s}" for s in ("high", "medium", "low"))
    console.print(f"wrote {', '.join(str(p) for p in written)}; monthly ${result.cost.total_usd:,.2f}; "
                  f"findings: {counts}", soft_wrap=True)
    for finding in result.findings:
        if finding.severity == "high":
            console.print(f"[bold red]high[/] {finding.area}: {finding.message}", soft_wrap=True)
    if strict and has_high(result.findings):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command to the CLI."""
    app.command("plan")(plan)
