"""What the machine is and what its processes cost: /proc readings (CPU ticks, peak RSS), load average."""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (0.0 if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    # Fields after the command: state(3) ppid(4) ... utime(14) stime(15); index = field number - 3.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` value from /proc/<pid>/status (``VmHWM`` = peak RSS, ``VmRSS`` = current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of a process (e.g. PostgreSQL's backends under the postmaster)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        if int(raw.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


@dataclass
class ProcessGroup:
    """A named server: one process, or a parent and its children (PostgreSQL)."""

    name: str
    pid: int
    with_children: bool = False
    # CPU of children that exited between samples is lost; PostgreSQL backends live as long as the pools.

    def pids(self) -> list[int]:
        return [self.pid, *children(self.pid)] if self.with_children else [self.pid]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def peak_rss_mib(self) -> float | None:
        """VmHWM of the process (the largest one, for a group)."""
        values = [v for v in (status_kib(p, "VmHWM") for p in self.pids()) if v is not None]
        return round(max(values) / 1024, 1) if values else None


@dataclass
class CpuWindow:
    """CPU used by each group between :meth:`start` and :meth:`stop`."""

    groups: list[ProcessGroup]
    began: float = 0.0
    wall_s: float = 0.0
    start_cpu: dict[str, float] = field(default_factory=dict)
    used_s: dict[str, float] = field(default_factory=dict)

    def start(self) -> CpuWindow:
        self.start_cpu = {g.name: g.cpu_seconds() for g in self.groups}
        self.began = time.monotonic()
        return self

    def stop(self) -> CpuWindow:
        self.wall_s = time.monotonic() - self.began
        self.used_s = {g.name: max(0.0, g.cpu_seconds() - self.start_cpu[g.name]) for g in self.groups}
        return self

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {name: 1000.0 * used / requests for name, used in self.used_s.items()} if requests else {}

    def percent(self) -> dict[str, float]:
        return {name: 100.0 * used / self.wall_s for name, used in self.used_s.items()} if self.wall_s else {}


def io_pressure() -> dict[str, float] | None:
    """avg10 of /proc/pressure/io: % of time some / all runnable tasks waited on I/O (None if unsupported)."""
    text = _read("/proc/pressure/io")
    out = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        fields = dict(f.split("=", 1) for f in rest.split())
        if "avg10" in fields:
            out[kind] = float(fields["avg10"])
    return out or None


def fsync_latency(folder: Path, count: int = 100) -> dict[str, float]:
    """Write 4 KiB + fsync ``count`` times in ``folder`` (where the databases keep their files): what one
    durable commit costs on this disk right now, in ms (p50/p99/max)."""
    path = folder / ".fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"x" * 4096
        for _ in range(count):
            began = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    times.sort()
    return {"p50": round(times[len(times) // 2], 3),
            "p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3), "max": round(times[-1], 3)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU model and count, memory, OS, kernel, Python: what a reader needs to weigh the numbers."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    mhz = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("cpu MHz")), None)
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    os_release = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', _read("/etc/os-release"), re.M))
    return {
        "cpu_model": model,
        "cpu_mhz": float(mhz) if mhz else None,
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_release.get("PRETTY_NAME", platform.platform()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def describe(m: dict[str, Any]) -> str:
    """One line: ``2 vCPU AMD EPYC, 23.4 GiB, Debian GNU/Linux 12, Python 3.11.7``."""
    return f"{m['nproc']} vCPU {m['cpu_model']}, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}"


def wait_for_quiet(threshold: float, max_wait_s: float, on_wait: Any = None, poll_s: float = 10.0) -> list[float]:
    """Wait (up to ``max_wait_s``) until the 1-minute load average is below ``threshold``; return it."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = load_average()
        if load[0] < threshold or time.monotonic() >= deadline:
            return load
        if on_wait is not None:
            on_wait(load, deadline - time.monotonic())
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
