"""``stackwright logs``: the per-process log files of a local run, like ``docker compose logs``."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from .. import term
from ..local.logfiles import Follower, LogLine, format_line, parse_since, processes, tail
from ..local.state import system_dir
from ..local.supervisor import COLORS
from .common import fail, load_for_local_run
from .local_cmds import StateDir, SystemArg

# How often -f looks for new lines: fast enough to feel live, slow enough to cost nothing.
POLL_S = 0.25


def logs(
    system: SystemArg,
    process: Annotated[list[str] | None, typer.Argument(help="Process(es) to show (default: all).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")] = False,
    since: Annotated[str | None, typer.Option(help="Only lines from this long ago on (30s, 5m, 2h) or an ISO time.")]
    = None,
    tail_n: Annotated[int | None, typer.Option("--tail", "-n", help="Only the last N lines of each process.",
                                               min=0)] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show each line's time.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Show the logs of a local run's processes, each line as "process | text"."""
    spec = load_for_local_run(system)
    log_dir = system_dir(spec, state_dir) / "logs"
    known = processes(log_dir)
    if not known:
        fail(f"{spec.name} has no logs yet (start it with 'stackwright up {spec.name}')")
    wanted = list(dict.fromkeys(process or []))
    unknown = [p for p in wanted if p not in known]
    if unknown:
        fail(f"{spec.name} has no process {', '.join(map(repr, unknown))}; its processes: {', '.join(known)}")
    names = wanted or known
    try:
        cutoff = parse_since(since) if since else None
    except ValueError as exc:
        fail(str(exc))
    color = term.colour(sys.stdout)
    width = max(len(n) for n in names)  # as docker compose: as wide as the names shown
    palette = {n: COLORS[i % len(COLORS)] for i, n in enumerate(known)}

    def show(line: LogLine) -> None:
        if line.process not in palette:  # a process that appeared while following
            palette[line.process] = COLORS[len(palette) % len(COLORS)]
        print(format_line(line, width, timestamps=timestamps, color=palette[line.process] if color else None),
              flush=True)

    # The follower marks where each file ends now; the tail reads up to there and the follower on from there,
    # so a line written meanwhile is printed once, not lost or doubled.
    follower = Follower(log_dir, frozenset(wanted) if wanted else None) if follow else None
    for line in tail(log_dir, names, lines=tail_n, since=cutoff, upto=follower.offsets() if follower else None):
        show(line)
    if follower is None:
        return
    try:
        while True:
            for line in follower.poll():
                show(line)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    """Add ``logs`` to the CLI."""
    app.command()(logs)
