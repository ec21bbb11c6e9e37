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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..resources import kind_of
from ..spec import System
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
            note=str(row.get("note", "")))
    return BenchResults(path=path, measured_at=data["measured_at"], machine=data["machine"], services=services)


def is_db_bound(system: System, service: str) -> bool:
    """Whether a service's requests wait on a database (it uses a postgres or search resource)."""
    return any(kind_of(system.resources[name]).database for name in system.services[service].uses)


def throughput(system: System, service: str, bench: BenchResults | None) -> Throughput:
    """Measured throughput of one replica when the bench file has it, else an estimate that says so."""
    key = f"{system.name}/{service}"
    if bench is not None and key in bench.services:
        row = bench.services[key]
        note = f"; {row.note}" if row.note else ""
        return Throughput(rps_per_replica=row.rps_per_replica, source="measured", p99_ms=row.p99_ms,
                          basis=f"measured {bench.measured_at} on {bench.machine}{note}")
    cores = system.services[service].resources.cpu_m / 1000
    low, high = DB_BOUND_RPS_PER_CORE if is_db_bound(system, service) else CPU_LIGHT_RPS_PER_CORE
    what = "DB-bound" if is_db_bound(system, service) else "CPU-light"
    return Throughput(
        rps_per_replica=low * cores, source="estimate",
        basis=(f"ESTIMATE (no measurement in {BENCH_RELATIVE}): {what} handler {low / 1000:g}-{high / 1000:g}k rps "
               f"per core ({ANCHORS}), low end x {cores:g} core CPU request"))
