"""Per-replica throughput of a service: measured (``bench/per_replica.json``) or a stated estimate.

The benchmark file's format is defined in ``bench/FORMAT.md``; ``stackwright bench`` writes it and
``bench/RESULTS.md`` explains the measurements. When a service has no measurement, plan uses a stated
estimate and says so in every place the number appears:

* DB-bound handler (the service uses a postgres or search resource): ~1.2-1.5k rps per core, the range
  public async-Python web benchmarks with one database query per request reach (HttpArena's async-db
  test, as of 2025-01); plan uses the low end, 1,200 rps per core.
* CPU-light handler (no database): ~3.5-5k rps per core (a realistic FastAPI handler costs 0.2-0.3 ms of
  CPU); plan uses the low end, 3,500 rps per core.

Either is scaled by the service's CPU request (a 500m pod is half a core).

A measured row that records the rate one process held on a whole core (``whole_core_rps``) and the CPU it
spent (``cpu_millicores_per_1k_rps``) is rescaled here to the spec's *current* CPU request, by the CPU the
handler actually costs: ``request / (millicores per 1k rps) x 1000``, never above the whole core's rate. The
basis sentence states those numbers, so a reader can redo the arithmetic, and the date and machine are the
row's own. A row without them is used as recorded (``rps_per_replica``), and the basis says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..resources import kind_of
from ..spec import System
from ..spec.model import CustomMetric
from .errors import PlanError
from .model import Throughput

BENCH_RELATIVE = Path("bench") / "per_replica.json"
DB_BOUND_RPS_PER_CORE = (1200.0, 1500.0)
CPU_LIGHT_RPS_PER_CORE = (3500.0, 5000.0)
ANCHORS = "stackwright's stated estimate for async Python handlers; measure with stackwright bench"


@dataclass(frozen=True)
class Measurement:
    """One service's row in the benchmark results file."""

    rps_per_replica: float
    cpu_millicores_per_1k_rps: float | None
    p99_ms: float | None
    note: str
    #: When and where this row was measured (its own ``measured_at``/``machine``, else the file's).
    measured_at: str
    machine: str
    #: The rate one process held on a whole core, before rescaling to a CPU request (None: not recorded).
    whole_core_rps: float | None = None


@dataclass(frozen=True)
class BenchResults:
    """The benchmark results file: when and where it was measured, and one row per service."""

    path: Path
    measured_at: str
    machine: str
    services: dict[str, Measurement]


def find_bench_file(system: System, explicit: Path | None = None) -> Path | None:
    """The results file to use: ``explicit``, else ``bench/per_replica.json`` in the cwd or above the spec."""
    if explicit is not None:
        if not explicit.is_file():
            raise PlanError(f"benchmark results file {explicit} does not exist")
        return explicit
    candidates = [Path.cwd() / BENCH_RELATIVE]
    if system.source is not None:
        candidates += [parent / BENCH_RELATIVE for parent in system.source.resolve().parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _number(value: Any, where: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise PlanError(f"{where} must be a positive number (got {value!r})")
    return float(value)


def _text(row: dict[str, Any], key: str, where: str, default: str) -> str:
    """A row's own ``measured_at``/``machine`` (rows of different runs share the file), else the file's."""
    value = row.get(key, default)
    if not isinstance(value, str) or not value:
        raise PlanError(f"{where}.{key} must be a non-empty string (see bench/FORMAT.md)")
    return value


def load_bench(path: Path) -> BenchResults:
    """Read and check a benchmark results file (schema 1)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"cannot read benchmark results {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise PlanError(f"{path}: expected a JSON object with \"schema\": 1 (see bench/FORMAT.md)")
    for key in ("measured_at", "machine"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise PlanError(f"{path}: \"{key}\" must be a non-empty string (see bench/FORMAT.md)")
    services: dict[str, Measurement] = {}
    raw = data.get("services")
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: \"services\" must be an object keyed by \"<system>/<service>\"")
    for key, row in raw.items():
        where = f"{path}: services[{key!r}]"
        if "/" not in key or not isinstance(row, dict):
            raise PlanError(f"{where}: key must be \"<system>/<service>\" and value an object")
        rps = _number(row.get("rps_per_replica"), f"{where}.rps_per_replica", optional=False)
        assert rps is not None
        services[key] = Measurement(
            rps_per_replica=rps,
            cpu_millicores_per_1k_rps=_number(row.get("cpu_millicores_per_1k_rps"),
                                              f"{where}.cpu_millicores_per_1k_rps", optional=True),
            p99_ms=_number(row.get("p99_ms"), f"{where}.p99_ms", optional=True),
            note=str(row.get("note", "")),
            measured_at=_text(row, "measured_at", where, data["measured_at"]),
            machine=_text(row, "machine", where, data["machine"]),
            whole_core_rps=_number(row.get("whole_core_rps"), f"{where}.whole_core_rps", optional=True))
    return BenchResults(path=path, measured_at=data["measured_at"], machine=data["machine"], services=services)


def is_db_bound(system: System, service: str) -> bool:
    """Whether a service's requests wait on a database (it uses a postgres or search resource)."""
    return any(kind_of(system.resources[name]).database for name in system.services[service].uses)


def unit_of(system: System, service: str) -> str:
    """What a service's rate counts: ``msg/s`` for a worker (messages it drains from a queue), else ``rps``."""
    return "msg/s" if system.services[service].kind == "worker" else "rps"


def measured_rate(row: Measurement, request_m: int, unit: str = "rps") -> tuple[float, str]:
    """One replica's rate (in ``unit``) from a measured row at a ``request_m`` millicore CPU request, and the
    sentence that gives its arithmetic (the figures shown are the ones used, so the result can be recomputed
    from them)."""
    whole, per_1k = row.whole_core_rps, row.cpu_millicores_per_1k_rps
    if whole is None or per_1k is None:
        return row.rps_per_replica, (f"{row.rps_per_replica:,.0f} {unit} per replica as recorded (rps_per_replica; "
                                     "the row has no whole-core rate and CPU cost to rescale to the spec's CPU "
                                     "request)")
    by_cpu = request_m / per_1k * 1000
    text = (f"one process held {whole:,.0f} {unit} on a whole core at {per_1k:g}m CPU per 1,000 {unit}; "
            f"the spec's {request_m}m CPU request / {per_1k:g}m x 1,000 = {by_cpu:,.0f} {unit}")
    if by_cpu > whole:
        # Below a core's worth of CPU the handler waited on something else: CPU does not buy more than that.
        return whole, text + f", capped at the {whole:,.0f} {unit} the whole core held"
    return by_cpu, text


def own_metric(system: System, service: str) -> CustomMetric | None:
    """The metric a service is scaled on when it carries something of its own (streams, say) and the spec
    states its peak (``autoscale.metric`` with ``peak``): plan sizes it in that metric. None otherwise."""
    auto = system.services[service].autoscale
    metric = auto.metric if auto is not None else None
    return metric if metric is not None and metric.peak is not None else None


def throughput(system: System, service: str, bench: BenchResults | None) -> Throughput:
    """What one replica carries: for a service scaled on a metric of its own with a stated peak (streams, say),
    the autoscaler's target in that metric's unit; else measured requests (or messages) per second when the
    bench file has them, else an estimate that says so."""
    metric = own_metric(system, service)
    if metric is not None:
        return Throughput(rps_per_replica=metric.target, source="estimate", unit=metric.name,
                          basis=(f"ESTIMATE: the autoscaler's target, {metric.target:g} {metric.name} per replica "
                                 "(autoscale.metric.target), taken as one replica's capacity; a stated figure, not "
                                 "measured by stackwright bench (the system's README gives its basis)"))
    key = f"{system.name}/{service}"
    request_m = system.services[service].resources.cpu_m
    unit = unit_of(system, service)
    if bench is not None and key in bench.services:
        row = bench.services[key]
        rps, arithmetic = measured_rate(row, request_m, unit)
        note = f"; what was measured: {row.note}" if row.note else ""
        return Throughput(rps_per_replica=rps, source="measured", p99_ms=row.p99_ms,
                          basis=f"{arithmetic}; measured {row.measured_at} on {row.machine}{note}",
                          measured_at=row.measured_at, unit=unit)
    cores = request_m / 1000
    low, high = DB_BOUND_RPS_PER_CORE if is_db_bound(system, service) else CPU_LIGHT_RPS_PER_CORE
    what = "DB-bound" if is_db_bound(system, service) else "CPU-light"
    return Throughput(
        rps_per_replica=low * cores, source="estimate", unit=unit,
        basis=(f"ESTIMATE (no measurement in {BENCH_RELATIVE}): {what} handler {low:,.0f}-{high:,.0f} rps "
               f"per core ({ANCHORS}{'; a message taken as one request' if unit != 'rps' else ''}); "
               f"the low end x the spec's {request_m}m CPU request: "
               f"{low:,.0f} x {cores:g} = {low * cores:,.0f} {unit}"))


def bench_note(system: System, bench: BenchResults | None, path: Path | None) -> str:
    """The plan's note on where per-replica figures come from: each measured service under its own date and
    machine, and plainly when none of this system's figures was measured (other systems' rows do not count)."""
    if bench is None or path is None:
        return f"no benchmark results ({BENCH_RELATIVE}): every per-replica throughput is an ESTIMATE"
    runs: dict[tuple[str, str], list[str]] = {}
    for service in system.services:
        row = bench.services.get(f"{system.name}/{service}")
        if row is not None:
            runs.setdefault((row.measured_at, row.machine), []).append(service)
    if not runs:
        return (f"benchmark results: {path.name} has no rows for {system.name}: none of its per-replica figures "
                "was measured, every one is an ESTIMATE")
    estimated = [s for s in system.services if f"{system.name}/{s}" not in bench.services]
    parts = [f"{', '.join(services)} measured {date} on {machine}" for (date, machine), services in runs.items()]
    tail = f"; ESTIMATE for {', '.join(estimated)}" if estimated else ""
    return f"benchmark results: {path.name}: " + "; ".join(parts) + tail
