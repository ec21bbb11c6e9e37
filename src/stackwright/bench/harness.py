"""The generic machinery of ``stackwright bench SYSTEM``; a system's scenarios live in its ``bench.py``.

:class:`SystemBench` does what every system's benchmark needs: machine readings, dev tokens (cached
between runs), a bare-ASGI **baseline** under the same server and flags (the ceiling for Python HTTP on
this machine), starting the system with a fresh data directory, process groups for CPU and memory, open
loop steps, and :meth:`SystemBench._measure`: a ramp to an estimate, a search for the maximum sustainable
rate (:mod:`.search`), then latency recorded at 50% and 90% of it. A system subclasses it in its own
``bench.py`` and implements :meth:`SystemBench.scenarios` (and :meth:`SystemBench.baseline_source`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx

from ..local.control import running_state, start_detached, stop
from ..local.ports import free_port
from ..spec import System, load_system
from . import procs
from .loadgen import LoadGenerator, RequestSource, StepSpec
from .search import Criteria, find_max_rate, round_rate
from .sources import TokenFile, cached_tokens
from .stats import StepResult


class Reporter(Protocol):
    """Where progress goes (the CLI draws it with rich; tests pass a silent one)."""

    def phase(self, title: str) -> None: ...

    def note(self, message: str) -> None: ...

    def step(self, scenario: str, label: str, result: StepResult) -> None: ...

    def running(self, label: str, seconds: float) -> None: ...

    def tick(self, elapsed_s: float) -> None: ...

    def done_running(self) -> None: ...


class SilentReporter:
    """A reporter that says nothing."""

    def phase(self, title: str) -> None: ...

    def note(self, message: str) -> None: ...

    def step(self, scenario: str, label: str, result: StepResult) -> None: ...

    def running(self, label: str, seconds: float) -> None: ...

    def tick(self, elapsed_s: float) -> None: ...

    def done_running(self) -> None: ...


@dataclass
class BenchOptions:
    """Knobs of a run; the defaults keep a full run under ~10 minutes on 2 cores."""

    step_s: float = 4.0  # each search step (the first warmup_s are not measured)
    warmup_s: float = 1.0
    point_s: float = 8.0  # the runs at 50% and 90% of the max rate
    probe_s: float = 2.0  # each step of the ramp that estimates capacity
    e2e_probe_s: float = 10.0
    e2e_s: float = 60.0
    processes: int = 2  # load generator processes
    users: int = 20_000  # distinct client identities (dev tokens) the load is spread over
    max_connections: int = 256
    criteria: Criteria | None = None  # default: p99 within the spec's slo.latency_p99_ms (bench/FORMAT.md)
    only: tuple[str, ...] = ()  # scenarios to run; empty means all the system's scenarios
    state_root: Path = Path(".stackwright/bench")
    settle_s: float = 1.0  # pause between steps so queues empty
    up_args: tuple[str, ...] = ()  # passed to `stackwright up` (e.g. --redis-url to use another Redis)


class SystemBench:
    """One benchmark run of a system; subclass per system, then :meth:`run` returns the results document."""

    #: every scenario the subclass can run, in order ("baseline" is the generic bare-ASGI ceiling)
    SCENARIOS: ClassVar[tuple[str, ...]] = ("baseline",)
    #: roles of the client tokens the load carries, and of the admin token used for set-up
    CLIENT_ROLES: ClassVar[tuple[str, ...]] = ()
    ADMIN_ROLES: ClassVar[tuple[str, ...]] = ("admin",)
    #: how the results document describes the clients (``{n}`` is their number)
    CLIENTS: ClassVar[str] = "{n:,} distinct client tokens"
    #: after a step that broke, wait up to this many seconds for the system to drain (:meth:`_recover`), so
    #: the backlog of one overload step does not spoil the steps after it; 0 (the default) waits only
    #: ``settle_s``
    RECOVER_S: ClassVar[float] = 0.0
    #: the system counts as drained once its processes together use less than this share of one core
    IDLE_CPU: ClassVar[float] = 0.10

    def __init__(self, spec_path: Path, options: BenchOptions, reporter: Reporter | None = None) -> None:
        self.spec_path = spec_path
        self.system: System = load_system(spec_path)
        self.opt = options
        if not options.only:
            options.only = tuple(self.SCENARIOS)
        if options.criteria is None:
            # FORMAT.md: a replica "holds" a rate while meeting the service's p99 target; the spec's SLO is it.
            options.criteria = Criteria(max_p99_ms=float(self.system.slo.latency_p99_ms))
        self.criteria: Criteria = options.criteria
        self.say: Reporter = reporter or SilentReporter()
        self.cache_dir = options.state_root / "cache"
        self.system_dir = options.state_root / self.system.name
        self.gen: LoadGenerator | None = None
        self._tokens: list[str] | None = None
        self.admin: str = ""
        self.token_file: TokenFile | None = None
        self.state: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ what a system provides

    def baseline_source(self) -> RequestSource:
        """Requests shaped like the system's hottest request, sent to the bare ASGI app."""
        raise NotImplementedError

    def scenarios(self) -> None:
        """Run the system's scenarios (the system is up; ``self.state`` says where); fill ``self.results``."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Undo what a scenario may have left (e.g. a paused process) before the system stops."""

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        """Run the chosen scenarios and return the results document (see :mod:`stackwright.bench.results`)."""
        machine = procs.machine()
        load_before = procs.load_average()
        io_before = procs.io_pressure()
        self.opt.state_root.mkdir(parents=True, exist_ok=True)
        disk = procs.fsync_latency(self.opt.state_root)
        started = dt.datetime.now(dt.UTC)
        began = time.monotonic()
        self.admin = self._idp().mint("bench-admin", list(self.ADMIN_ROLES), ttl_s=86400)
        with LoadGenerator(self.opt.processes) as gen:
            self.gen = gen
            if "baseline" in self.opt.only:
                gen.add_source("baseline", self.baseline_source())
                self.results["baseline"] = self._baseline()
            if set(self.opt.only) - {"baseline"}:
                self._with_system()
        load_after = procs.load_average()
        return {
            "schema": 1,
            "system": self.system.name,
            "started_at": started.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - began, 1),
            "machine": machine,
            "machine_line": procs.describe(machine),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "io_pressure_before": io_before,
            "io_pressure_after": procs.io_pressure(),
            "disk_fsync_ms": disk,
            "command": " ".join(["stackwright", "bench", self.system.name, *self._cli_args()]),
            # a run of some scenarios only (--only) leaves the per_replica.json rows it did not measure alone
            "partial": tuple(self.opt.only) != tuple(self.SCENARIOS),
            "load_generator": {
                "kind": "open loop, fixed rate; latency from the intended send time (wrk2 model)",
                "implementation": "stackwright.bench.loadgen: asyncio protocols on uvloop + httptools, "
                                  "keep-alive HTTP/1.1",
                "processes": self.opt.processes,
                "max_connections": self.opt.max_connections,
                "client_tokens": len(self._tokens or ()),
                "clients": self.CLIENTS.format(n=self.opt.users),
            },
            "criteria": {**self.criteria.to_dict(), "text": self.criteria.describe()},
            "options": {"step_s": self.opt.step_s, "warmup_s": self.opt.warmup_s, "point_s": self.opt.point_s,
                        "probe_s": self.opt.probe_s, "e2e_probe_s": self.opt.e2e_probe_s, "e2e_s": self.opt.e2e_s},
            "scenarios": self.results,
            "notes": self.notes,
        }

    def _cli_args(self) -> list[str]:
        args = []
        if tuple(self.opt.only) != tuple(self.SCENARIOS):
            args += ["--only", ",".join(self.opt.only)]
        if self.opt.e2e_s != 60.0:
            args += ["--e2e-seconds", f"{self.opt.e2e_s:g}"]
        if self.opt.processes != 2:
            args += ["--generators", str(self.opt.processes)]
        args += list(self.opt.up_args)
        return args

    @property
    def tokens(self) -> list[str]:
        """The ``--users`` client tokens the load carries, minted (or read from the cache) at first use: a bench
        whose scenarios never send them (speech's streams mint their own) does not wait for 20,000 (~19 s on a
        first run)."""
        if self._tokens is None:
            idp = self._idp()
            self.say.phase(f"minting {self.opt.users:,} client tokens (cached between runs)")
            self._tokens = cached_tokens(self.cache_dir, self.token_scope(), self.opt.users,
                                         lambda sub: idp.mint(sub, list(self.CLIENT_ROLES), ttl_s=86400))
        return self._tokens

    def single_use_tokens(self, count: int) -> Path:
        """The file of single-use client tokens (:class:`~.sources.TokenFile`), holding at least ``count``.

        Minted on demand, between steps (never while one runs), by as many processes as there are CPUs,
        and kept for later runs: a full run needs ~10^6 of them (~4 min to mint on 2 vCPUs the first time).
        """
        if self.token_file is None:
            self.token_file = TokenFile(self.cache_dir, self.token_scope())
        have = self.token_file.count
        if have < count:
            # Mint well ahead: starting the pool costs ~1 s, and the next steps will need more.
            target = max(count, have + 100_000)
            self.say.phase(f"minting {target - have:,} single-use client tokens ({have:,} cached)")
            ident = self.system.edge.identity
            assert ident is not None
            job = (str(self.cache_dir / "idp-key.pem"), ident.issuer, ident.audience, ident.roles_claim,
                   list(self.CLIENT_ROLES), self.token_file.ttl_s)
            import concurrent.futures
            import multiprocessing

            workers = max(1, os.cpu_count() or 1)
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) \
                    as pool:
                def mint_batch(first: int, n: int) -> list[str]:
                    chunk = math.ceil(n / workers)
                    parts = pool.map(_mint_range, [(*job, start, min(chunk, first + n - start))
                                                   for start in range(first, first + n, chunk)])
                    return [t for part in parts for t in part]

                self.token_file.ensure(target, mint_batch)
        return self.token_file.path

    def token_scope(self) -> str:
        """What the cached client tokens are valid for: the signing key and this system's issuer, audience and
        client roles. Every system benched from one folder signs with the same key, so a cache keyed by the key
        alone handed one system the tokens minted for another (whose gateway refused every one as the wrong
        audience)."""
        ident = self.system.edge.identity
        claims = (ident.issuer, ident.audience, ident.roles_claim) if ident is not None else ()
        digest = hashlib.sha256(json.dumps([*claims, list(self.CLIENT_ROLES)]).encode()).hexdigest()[:12]
        return f"{self._idp().kid}-{digest}"

    def _idp(self) -> Any:
        from ..local.demokit import idp_for

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return idp_for(self.system, self.cache_dir / "idp-key.pem")

    # ------------------------------------------------------------------ baseline

    def _baseline(self) -> dict[str, Any]:
        self.say.phase("baseline: bare ASGI app, same server and flags")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "stackwright.runtime.serve", "stackwright.bench.baseline:app", "--port", str(port),
             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
            group = [procs.ProcessGroup("baseline", proc.pid)]
            out = self._measure("baseline", "baseline", "127.0.0.1", port, group, start=3000)
            out["target"] = ("bare ASGI app (stackwright.bench.baseline:app), 1 process, fed requests shaped like the "
                             "system's hottest one")
            return out
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    # ------------------------------------------------------------------ the system

    def _with_system(self) -> None:
        self.say.phase(f"starting {self.system.name} (fresh data directory)")
        if running_state(self.system.name, self.opt.state_root):
            stop(self.system.name, self.opt.state_root)
        shutil.rmtree(self.system_dir, ignore_errors=True)
        self.system_dir.mkdir(parents=True)
        shutil.copy2(self.cache_dir / "idp-key.pem", self.system_dir / "idp-key.pem")
        self.state = start_detached(self.spec_path, port=free_port(), state_root=self.opt.state_root,
                                    extra_args=list(self.opt.up_args), on_step=self.say.note)
        try:
            self.scenarios()
            self.results["_processes"] = {g.name: {"peak_rss_mib": g.peak_rss_mib()} for g in self._all_groups()}
        finally:
            self.cleanup()
            self.say.phase(f"stopping {self.system.name}")
            stop(self.system.name, self.opt.state_root)

    def _url(self, service: str) -> tuple[str, int]:
        url = self.state["services"][service][0]["url"] if service != "edge" else self.state["gateway"]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def _pid(self, service: str) -> int:
        return int(self.state["services"][service][0]["pid"])

    def _group(self, name: str) -> procs.ProcessGroup:
        if name == "gateway":
            return procs.ProcessGroup("gateway", _gateway_pid(self.state))
        return procs.ProcessGroup(name, self._pid(name))

    def _groups(self, *names: str) -> list[procs.ProcessGroup]:
        """Process groups by name; Redis/Postgres only when this run started them (not given by URL)."""
        out = []
        for name in names:
            if name in ("redis", "postgres"):
                pid = (self.state["backing"].get(name) or {}).get("pid")
                if pid:
                    out.append(procs.ProcessGroup(name, int(pid), with_children=name == "postgres"))
            else:
                out.append(self._group(name))
        return out

    def _all_groups(self) -> list[procs.ProcessGroup]:
        return self._groups("gateway", *self.state["services"], "redis", "postgres")

    def gen_add(self, name: str, source: Any) -> None:
        """Register a request source with the load generator (pickled to its processes once)."""
        assert self.gen is not None
        self.gen.add_source(name, source)

    def _reserve(self, source: str, count: int) -> int:
        """First request index of the next step of ``source``; a system whose requests must not repeat
        (one vote per viewer and poll) overrides this to hand out fresh index ranges."""
        del source, count
        return 0

    # ------------------------------------------------------------------ steps

    def _step(self, scenario: str, label: str, source: str, host: str, port: int, rate: float, duration: float,
              groups: list[procs.ProcessGroup], *, warmup: float | None = None, timeout: float = 10.0,
              on_tick: Any = None, recover: bool = True) -> StepResult:
        """One fixed-rate step of ``source``; with ``recover``, a broken step is followed by :meth:`_recover`."""
        assert self.gen is not None
        warm = self.opt.warmup_s if warmup is None else warmup
        n = round(rate * duration)
        base = self._reserve(source, n)
        per_process = max(8, self.opt.max_connections // self.opt.processes)
        spec = StepSpec(host, port, rate, duration, warmup_s=warm, max_connections=per_process,
                        timeout_s=timeout, index_base=base)
        self.say.running(f"{scenario}: {label} @ {rate:,.0f}/s", duration)

        def tick(elapsed: float) -> None:
            self.say.tick(elapsed)
            if on_tick is not None:
                on_tick(elapsed)

        window = procs.CpuWindow(groups).start()
        result = self.gen.run(source, spec, on_tick=tick)
        window.stop()
        self.say.done_running()
        result.cpu_ms_per_request = window.per_request_ms(result.completed)
        result.cpu_percent = window.percent()
        if result.passed is None and label != "ramp":
            result.passed, result.reason = self.criteria.judge(result)
        self.say.step(scenario, label, result)
        time.sleep(self.opt.settle_s)
        if recover and self.RECOVER_S and not self.criteria.judge(result)[0]:
            self._recover(scenario, label, groups)
        return result

    def _recover(self, scenario: str, label: str, groups: list[procs.ProcessGroup]) -> float:
        """The recovery pause after a broken step: no load is offered until the measured processes together
        use less than ``IDLE_CPU`` of a core over a second (the requests and queued events left by the step
        are done), for at most ``RECOVER_S`` seconds. Printed and listed in the run's notes; returns the
        seconds it took."""
        began = time.monotonic()
        while time.monotonic() - began < self.RECOVER_S:
            window = procs.CpuWindow(groups).start()
            time.sleep(1.0)
            if sum(window.stop().used_s.values()) / window.wall_s < self.IDLE_CPU:
                break
        took = time.monotonic() - began
        drained = "drained" if took < self.RECOVER_S else "still busy, went on"
        self.say.phase(f"{scenario}: recovery pause after the broken {label} step: {took:.1f} s ({drained})")
        self.notes.append(f"{scenario}: {took:.1f} s recovery pause after a broken {label} step ({drained})")
        return took

    def _measure(self, scenario: str, source: str, host: str, port: int, groups: list[procs.ProcessGroup], *,
                 start: float) -> dict[str, Any]:
        """Ramp to an estimate, search the max sustainable rate, then record latency at 50% and 90% of it.

        The ramp runs short steps from ``start`` up by x1.5 until one clearly breaks, so the service is
        never driven far past its capacity (a hard overload leaves it with grown pools and a backlog
        that spoil the next steps); the last rate that kept up is the estimate.
        """
        estimate = 0.0
        ramp = []
        rate = start
        loose = self.criteria.max_p99_ms * 2
        def kept_up(step: StepResult) -> bool:
            p99 = step.latency_ms.get("p99", math.inf)
            return step.achieved_rps >= 0.9 * step.offered_rps and step.error_rate <= 0.01 and p99 <= loose

        for _ in range(10):
            step = self._step(scenario, "ramp", source, host, port, rate, self.opt.probe_s, groups, warmup=0.5,
                              timeout=5.0)
            ramp.append(step)
            if not kept_up(step) and step.achieved_rps >= 0.8 * rate:  # a stall or a real limit? once more
                step = self._step(scenario, "ramp", source, host, port, rate, self.opt.probe_s, groups,
                                  warmup=0.5, timeout=5.0)
                ramp.append(step)
            if not kept_up(step):
                break
            estimate = rate
            rate *= 1.5
        if estimate == 0.0:
            estimate = max(10.0, 0.7 * ramp[-1].achieved_rps)
        time.sleep(1.0)

        def run(r: float) -> StepResult:
            return self._step(scenario, "search", source, host, port, r, self.opt.step_s, groups)

        # The capacity lies between the last rate the ramp held and 1.5x that: aim the search at the middle.
        search = find_max_rate(run, 1.25 * estimate, self.criteria)
        out: dict[str, Any] = {
            "processes": [g.name for g in groups],
            "capacity_estimate_rps": round(1.25 * estimate, 1),
            "max_rps": search.max_rate,
            "ramp": [p.to_dict() for p in ramp],
            "search": [s.to_dict() for s in search.steps],
        }
        if search.max_rate <= 0:
            out["points"] = {}
            return out
        points = {}
        for fraction in (0.5, 0.9):
            r = round_rate(search.max_rate * fraction)
            points[f"{int(fraction * 100)}%"] = self._step(scenario, f"{int(fraction * 100)}% of max", source, host,
                                                           port, r, self.opt.point_s, groups).to_dict()
        out["points"] = points
        best = search.best
        out["at_max"] = best.to_dict() if best else None
        out["peak_rss_mib"] = {g.name: g.peak_rss_mib() for g in groups}
        return out


# ---------------------------------------------------------------------- helpers


def queue_bounded(samples: list[tuple[float, int]], rate: float, duration: float) -> tuple[bool, float]:
    """Queue depth is bounded when its trend grows by < 2% of the arrival rate and stays under 5 s of work."""
    points = [(t, d) for t, d in samples if t <= duration + 0.3]
    if len(points) < 3:
        return True, 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_d = sum(d for _, d in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (d - mean_d) for t, d in points) / var if var else 0.0
    return slope < 0.02 * rate and max(d for _, d in points) < 5 * rate, slope


def _mint_range(job: tuple[str, str, str, str, list[str], int, int, int]) -> list[str]:
    """Tokens ``first .. first + n - 1`` (subjects ``bench-once-<i>``), in a minting process."""
    from ..local.idp import DevIdP

    key_file, issuer, audience, roles_claim, roles, ttl_s, first, n = job
    idp = DevIdP(Path(key_file), issuer=issuer, audience=audience, roles_claim=roles_claim)
    return [idp.mint(f"bench-once-{i}", roles, ttl_s=ttl_s) for i in range(first, first + n)]


def _gateway_pid(state: dict[str, Any]) -> int:
    """The gateway's pid: the process listening on the gateway's port (the runner does not record it)."""
    port = int(state["gateway"].rsplit(":", 1)[1])
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inode = parts[9]
                    break
        if inode:
            break
    if inode is None:
        raise RuntimeError(f"no process listens on the gateway port {port}")
    target = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return int(entry.name)
    raise RuntimeError(f"cannot find the process owning the gateway socket on port {port}")


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"baseline server did not answer at {url}")


