"""``stackwright bench SYSTEM``: measured throughput and latency under open-loop load, written to bench/."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .common import console, fail, load, require_system_extras
from .local_cmds import RedisFsync


class RichReporter:
    """Progress for a long run: a bar per running step, one line per finished step."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.task: Any = None
        self.total = 0.0

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase(self, title: str) -> None:
        console.print(f"[bold cyan]▶ {title}")

    def note(self, message: str) -> None:
        console.print(f"  {message}")

    def running(self, label: str, seconds: float) -> None:
        self.total = seconds
        self.task = self.progress.add_task(f"  {label}", total=seconds, info="")

    def tick(self, elapsed_s: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=min(elapsed_s, self.total), info=f"{elapsed_s:.0f}s")

    def done_running(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def step(self, scenario: str, label: str, result: Any) -> None:
        ms = result.latency_ms
        verdict = "" if result.passed is None else ("[green]held" if result.passed else f"[red]broke: {result.reason}")
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in result.cpu_percent.items())
        console.print(f"  {label:>12} {result.offered_rps:>8,.0f}/s -> {result.achieved_rps:>8,.0f}/s  "
                      f"p50 {_ms(ms.get('p50'))} p99 {_ms(ms.get('p99'))} p99.9 {_ms(ms.get('p99.9'))}  "
                      f"err {result.error_rate:.2%}  cpu {cpu}  gen {result.generator_cpu_percent:.0f}%  {verdict}")


def _ms(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.1f}ms"


def bench(
    system: Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")],
    only: Annotated[str | None, typer.Option(help="Comma-separated scenarios to run (default: all).")] = None,
    e2e_seconds: Annotated[float, typer.Option(help="Length of the sustained end-to-end run.")] = 60.0,
    generators: Annotated[int, typer.Option(help="Load generator processes.")] = 2,
    wait_quiet: Annotated[float, typer.Option(
        help="Wait up to this many seconds for the 1-minute load average to drop below --quiet-load.")] = 0.0,
    quiet_load: Annotated[float, typer.Option(help="Load average that counts as a quiet machine.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Folder for results/<date>.json, RESULTS.md and per_replica.json.")]
    = Path("bench"),
    write: Annotated[bool, typer.Option(help="Write the result files (--no-write for a dry run).")] = True,
    redis_url: Annotated[str | None, typer.Option(help="Run the system on this Redis instead of an embedded one "
                                                       "(e.g. one with another fsync policy).")] = None,
    postgres_url: Annotated[str | None, typer.Option(help="Run the system on this PostgreSQL server.")] = None,
    redis_fsync: Annotated[RedisFsync, typer.Option(
        help="fsync policy of the embedded Redis (as in 'stackwright up').")] = RedisFsync.always,
) -> None:
    """Measure a system under open-loop load: max sustained rates, latency percentiles, CPU and memory."""
    from ..bench import procs
    from ..bench.harness import BenchOptions
    from ..bench.results import targets, write_all
    from ..plugins import PluginMissing, load_plugin

    spec = load(system)
    require_system_extras(spec)
    try:
        plugin = load_plugin(spec, "bench")
    except PluginMissing as exc:
        fail(f"{exc}; a system's benchmark is its bench.py plug-in (see stackwright.plugins)")
    scenarios: tuple[str, ...] = tuple(plugin.SCENARIOS)
    opt_in: tuple[str, ...] = tuple(getattr(plugin, "OPT_IN", ()))  # run only when named in --only
    chosen = tuple(s.strip() for s in only.split(",")) if only else scenarios
    unknown = [s for s in chosen if s not in scenarios + opt_in]
    if unknown:
        fail(f"unknown scenario(s) {', '.join(unknown)} (choose from {', '.join(scenarios + opt_in)})")
    if wait_quiet > 0:
        load_now = procs.wait_for_quiet(quiet_load, wait_quiet, on_wait=lambda load, left: console.print(
            f"  waiting for a quiet machine: load {load[0]:.2f} (want < {quiet_load}); {left:.0f}s left"))
        console.print(f"load average now {load_now[0]:.2f}" + ("" if load_now[0] < quiet_load else
                                                                " (still busy; running anyway)"))
    up_args = (("--redis-url", redis_url) if redis_url else ()) + (
        ("--postgres-url", postgres_url) if postgres_url else ()) + ("--redis-fsync", redis_fsync.value)
    options = BenchOptions(only=chosen, e2e_s=e2e_seconds, processes=generators, up_args=up_args)
    assert spec.source is not None
    began = time.monotonic()
    with RichReporter() as reporter:
        try:
            doc = plugin.run(spec.source, options, reporter)
        except Exception as exc:  # the one line the user needs; details are in the state dir's logs
            fail(f"benchmark failed: {exc.__class__.__name__}: {exc} (logs: {options.state_root / spec.name}/logs)")
    summary(doc, plugin)
    for row in targets(doc, plugin):
        console.print(f"{'[green]met' if row['met'] else '[red]missed'}[/]: {row['target']} — {row['measured']}")
    console.print(f"load average before {doc['load_average_before']}, after {doc['load_average_after']}; "
                  f"{time.monotonic() - began:.0f}s")
    if write:
        paths = write_all(doc, spec, out, plugin)
        console.print("wrote " + ", ".join(str(p) for p in paths.values()))


def summary(doc: dict[str, Any], plugin: Any = None) -> None:
    """What each scenario sustained, two lines per scenario (readable in an 80-column terminal); the plug-in's
    ``summary(doc)`` adds lines for scenarios that are not rate-searched."""
    console.print(f"[bold]{doc['system']}[/] on {doc['machine_line']}")

    def per_process(values: dict[str, Any] | None, digits: int) -> str:
        return ", ".join(f"{k} {v:.{digits}f}" for k, v in (values or {}).items() if v is not None) or "-"

    def latency(point: dict[str, Any] | None) -> str:
        ms = (point or {}).get("latency_ms") or {}
        return " / ".join(_ms(ms.get(q)) for q in ("p50", "p99", "p99.9"))

    for name, sc in doc["scenarios"].items():
        if name.startswith("_") or "max_rps" not in sc:
            continue
        pts = sc.get("points") or {}
        most = pts.get("90%") or {}
        console.print(f"  [bold]{name}[/]  {sc.get('max_rps', 0):,.0f} rps; p50 / p99 / p99.9 "
                      f"@50% {latency(pts.get('50%'))}, @90% {latency(most)}")
        console.print(f"      CPU ms/req @90% {per_process(most.get('cpu_ms_per_request'), 3)}; "
                      f"peak RSS MiB {per_process(sc.get('peak_rss_mib'), 1)}")
    for line in (getattr(plugin, "summary", None) or (lambda _doc: []))(doc):
        console.print(line)


def register(app: typer.Typer) -> None:
    """Add ``stackwright bench``."""
    app.command()(bench)
