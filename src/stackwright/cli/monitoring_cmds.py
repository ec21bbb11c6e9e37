"""``stackwright metrics`` (live numbers from Prometheus) and ``stackwright monitoring`` (write the bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import term
from .common import console, fail, load

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
SystemArg = Annotated[str, typer.Argument(help="system name (systems/<name>) or path to a system.yaml")]


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def metrics(
    system: SystemArg,
    prometheus_url: Annotated[str | None, typer.Option(
        "--prometheus-url", help="Prometheus to query (default: the one `up --monitoring` started, else :9090)"
    )] = None,
    window: Annotated[str, typer.Option(help="rate window, e.g. 1m or 5m")] = "1m",
) -> None:
    """Show request rate, p95 latency, error rate and in-flight requests per service."""
    from ..monitoring import PrometheusError, service_metrics

    spec = load(system)
    if prometheus_url is None:
        from ..local.control import running_state

        state = running_state(spec) or {}
        prometheus_url = state.get("prometheus") or DEFAULT_PROMETHEUS_URL
    try:
        rows = service_metrics(prometheus_url, spec, window=window)
    except PrometheusError as exc:
        fail(f"{exc} (start one with `stackwright up {spec.name} --monitoring`, or pass --prometheus-url)")
    table = Table(title=f"{spec.name}: last {window} (from {prometheus_url})")
    for column in ("service", "targets up", "req/s", "p95 ms", "5xx", "in flight"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for row in rows:
        table.add_row(
            row["service"],
            f"{row['targets_up']}/{row['targets']}",
            _fmt(row["request_rate"], ".2f"),
            _fmt(row["p95_ms"], ".1f"),
            _fmt(None if row["error_rate"] is None else row["error_rate"] * 100, ".2f", "%"),
            _fmt(row["in_flight"], ".0f"),
        )
    term.console().print(table)


def monitoring(
    system: SystemArg,
    out: Annotated[Path, typer.Option("--out", help="directory to write the bundle into")],
) -> None:
    """Write Prometheus config + rules, Grafana provisioning + dashboard and a docker-compose.yml."""
    from ..monitoring import write_monitoring_bundle

    spec = load(system)
    try:
        files = write_monitoring_bundle(spec, out)
    except OSError as exc:
        fail(f"cannot write the bundle to {out}: {exc.strerror or exc}")
    for path in files:
        console.print(f"wrote {path}")
    console.print(f"start it with: docker compose -f {out / 'docker-compose.yml'} up -d "
                  f"(Prometheus :9090, Grafana :3001)")


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the ``stackwright`` app."""
    app.command("metrics")(metrics)
    app.command("monitoring")(monitoring)
