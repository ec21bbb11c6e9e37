"""``stackwright rollout``: rehearse a service's canary release on a running local system.

On a system started with ``up --monitoring`` the rehearsal

1. starts the new version's processes (one per stable replica) beside the stable ones, with the same
   environment (``--inject`` adds :data:`stackwright.runtime.faults.FAULT_ENV` to make it a bad version);
2. relabels the local Prometheus' targets the way the rendered ServiceMonitor labels pods
   (``rollouts_pod_template_hash``: one hash for the stable replicas, another for the canary's) and reloads it;
3. walks the spec's steps (``setWeight`` N on the gateway's admin port, then ``pause``) while the background
   analysis measures every ``interval`` with the AnalysisTemplate's own metrics
   (:func:`stackwright.render.k8s.rollout.template_metrics`: same PromQL, limits and conditions), against the
   real Prometheus' ``/api/v1/query``;
4. ends promoted (every step passed and every gate measured a pass), aborted (a gate failed more than its
   failureLimit, the analysis errored, or the canary never became ready: all traffic back to stable, canary
   stopped) or paused (more inconclusive measurements than inconclusiveLimit: too little canary traffic to
   judge; no data is never a pass).

Whatever the outcome, the gateway's split is cleared, the canary's processes are stopped and Prometheus'
configuration is restored before it returns. Promotion does not replace the running stable processes (the
runner owns them and runs the spec's code): it reports that production would now shift all traffic to the
new version, and the stable processes carry on serving the old one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..contract import EDGE_PROOF_ENV
from ..monitoring.prometheus import LocalPrometheus, PrometheusError, query
from ..render.k8s.rollout import (
    HASH_METRIC_LABEL,
    analysis_metrics,
    effective_analysis,
    resolve_args,
    template_metrics,
)
from ..runtime.faults import FAULT_ENV, parse_fault
from ..spec import System
from ..spec.quantities import seconds
from .control import running_state
from .ports import free_port
from .runner import _http_ok
from .state import system_dir
from .supervisor import ProcessSpec, Supervisor
from .wiring import Endpoints, service_env

#: The rendered Rollout's progressDeadlineSeconds: a canary not ready by then aborts the rollout.
PROGRESS_DEADLINE_S = 600.0
#: Restarts after which a canary that keeps exiting counts as crash-looping (Kubernetes' CrashLoopBackOff);
#: production would wait for the progress deadline, the rehearsal need not.
CRASH_LOOP_RESTARTS = 2
#: The local Prometheus' scrape interval (LocalPrometheus' default, which ``up --monitoring`` uses).
DEFAULT_SCRAPE = "5s"

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR = "Successful", "Failed", "Inconclusive", "Error"


class RolloutError(RuntimeError):
    """The rehearsal cannot start (system not running, no --monitoring, no canary rollout, bad path)."""


@dataclass
class RehearsalOptions:
    """Knobs of one rehearsal. The ``*_s`` overrides shorten the spec's timings (None: as the spec says)."""

    inject: str | None = None  # a runtime.faults spec for the canary's processes
    interval_s: float | None = None  # analysis interval (spec: rollout.analysis.interval)
    pause_s: float | None = None  # every step's pause (spec: rollout.steps[].pause)
    scrape_interval: str | None = None  # Prometheus scrape interval during the rehearsal (default 5s)
    ready_timeout_s: float = PROGRESS_DEADLINE_S
    state_root: Path | None = None

    def overrides(self) -> list[str]:
        """The rehearsal overrides in force, as ``name=value`` for the printout."""
        out = []
        if self.interval_s is not None:
            out.append(f"interval={self.interval_s:g}s")
        if self.pause_s is not None:
            out.append(f"pause={self.pause_s:g}s")
        if self.scrape_interval is not None:
            out.append(f"scrape-interval={self.scrape_interval}")
        return out


@dataclass
class Measurement:
    """One check's result: ``value`` (None without data), its limit, and Argo's phase for it."""

    metric: str
    phase: str
    value: float | None
    limit: float
    detail: str = ""


@dataclass
class Analysis:
    """The background analysis run: per-metric counters with Argo Rollouts' semantics.

    A metric fails the run when its failed measurements exceed ``failureLimit``, makes it Inconclusive when
    its inconclusive ones exceed ``inconclusiveLimit``, and errs when more than ``consecutiveErrorLimit``
    queries in a row could not be run."""

    metrics: list[dict[str, Any]]
    canary_hash: str
    stable_hash: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    consecutive_errors: dict[str, int] = field(default_factory=dict)
    phase: str = "Running"
    reason: str = ""
    ran: dict[str, str] = field(default_factory=dict)  # metric -> the exact query sent to Prometheus

    def __post_init__(self) -> None:
        for m in self.metrics:
            self.counts[m["name"]] = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, ERROR: 0}
            self.consecutive_errors[m["name"]] = 0
            self.ran[m["name"]] = resolve_args(m["provider"]["prometheus"]["query"],
                                               canary_hash=self.canary_hash, stable_hash=self.stable_hash)

    def measure(self, prometheus_url: str) -> list[Measurement]:
        """Run every metric's query once and fold the results into the counters and the run's phase."""
        out = []
        for m in self.metrics:
            name = m["name"]
            limit = float(m["limit"])
            try:
                result = query(prometheus_url, self.ran[name], timeout=float(m["provider"]["prometheus"]["timeout"]))
            except PrometheusError as exc:
                out.append(Measurement(name, ERROR, None, limit, str(exc)))
            else:
                out.append(judge(name, result, limit))
        for r in out:
            self.counts[r.metric][r.phase] += 1
            self.consecutive_errors[r.metric] = self.consecutive_errors[r.metric] + 1 if r.phase == ERROR else 0
        for m in self.metrics:
            name, c = m["name"], self.counts[m["name"]]
            if c[FAILED] > m["failureLimit"] and self.phase == "Running":
                self.phase, self.reason = FAILED, f"{name} failed {c[FAILED]} times (failureLimit {m['failureLimit']})"
            elif self.consecutive_errors[name] > m["consecutiveErrorLimit"] and self.phase == "Running":
                self.phase, self.reason = ERROR, (
                    f"{name} could not be measured {self.consecutive_errors[name]} times in a row "
                    f"(consecutiveErrorLimit {m['consecutiveErrorLimit']})")
            elif c[INCONCLUSIVE] > m["inconclusiveLimit"] and self.phase == "Running":
                self.phase, self.reason = INCONCLUSIVE, (
                    f"{name} was inconclusive {c[INCONCLUSIVE]} times (inconclusiveLimit {m['inconclusiveLimit']}): "
                    "the canary served too few requests to judge")
        return out

    def every_gate_passed(self) -> bool:
        """True once every metric has at least one successful measurement (silence is never a pass)."""
        return all(c[SUCCESSFUL] > 0 for c in self.counts.values())


def judge(metric: str, result: list[dict[str, Any]], limit: float) -> Measurement:
    """A query result as Argo Rollouts judges it with the template's conditions: an empty vector or NaN is
    Inconclusive (``len(result) > 0 && !isNaN(result[0])`` is false), above ``limit`` Failed, else Successful."""
    if not result:
        return Measurement(metric, INCONCLUSIVE, None, limit, "no data (too few canary requests in the window)")
    value = float(result[0]["value"][1])
    if math.isnan(value):
        return Measurement(metric, INCONCLUSIVE, None, limit, "NaN (nothing to divide by)")
    return Measurement(metric, FAILED if value > limit else SUCCESSFUL, value, limit)


@dataclass
class RehearsalResult:
    """How a rehearsal ended: ``outcome`` promoted | aborted | paused, why, and what it ran."""

    outcome: str
    reason: str
    canary_hash: str
    stable_hash: str
    template_queries: dict[str, str]  # metric -> query as the AnalysisTemplate holds it ({{args.*}})
    ran_queries: dict[str, str]  # metric -> the query sent to Prometheus (hashes filled in)
    measurements: list[dict[str, Any]] = field(default_factory=list)  # {step, weight, t_s, results: [...]}

    @property
    def exit_code(self) -> int:
        """0 promoted, 1 aborted, 3 paused."""
        return {"promoted": 0, "aborted": 1}.get(self.outcome, 3)


def pod_template_hash(*parts: str) -> str:
    """A 10-character hash like the pod-template-hash Kubernetes gives a ReplicaSet."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def check_rehearsal(system: System, service: str, new_path: Path, state_root: Path | None) -> dict[str, Any]:
    """The running system's state if a rehearsal of ``service`` from ``new_path`` can start; else
    :class:`RolloutError` with a one-line reason."""
    svc = system.services.get(service)
    if svc is None:
        raise RolloutError(f"{system.name} has no service {service!r} (services: {', '.join(system.services)})")
    if svc.rollout.strategy != "canary":
        canaries = [n for n, s in system.services.items() if s.rollout.strategy == "canary"]
        raise RolloutError(f"service {service!r} has no canary rollout (rollout.strategy: {svc.rollout.strategy}); "
                           f"canaries in {system.name}: {', '.join(canaries) or 'none'}")
    if not svc.routes:
        raise RolloutError(f"service {service!r} has no routes, so the gateway has no traffic of it to split")
    module = svc.app.split(":", 1)[0].replace(".", "/")
    if not new_path.is_dir():
        raise RolloutError(f"--path {new_path} is not a folder (give the new version's service folder)")
    if not ((new_path / f"{module}.py").is_file() or (new_path / module / "__init__.py").is_file()):
        raise RolloutError(f"--path {new_path} has no {module}.py: service {service!r} runs {svc.app!r}")
    state = running_state(system, state_root)
    if state is None:
        raise RolloutError(f"{system.name} is not running (start it with: stackwright up {system.name} --monitoring)")
    if not state.get("prometheus"):
        raise RolloutError(f"{system.name} was started without --monitoring; the canary analysis needs its "
                           f"Prometheus (stackwright down {system.name}; stackwright up {system.name} --monitoring)")
    if not state.get("gateway_admin"):
        raise RolloutError(f"{system.name}'s gateway has no admin port to set the canary's weight on")
    return state


class Rehearsal:
    """One canary rehearsal of ``service`` with the code in ``new_path`` (see the module docstring)."""

    def __init__(self, system: System, service: str, new_path: Path, options: RehearsalOptions,
                 report: Callable[[str], None] = print) -> None:
        self.system = system
        self.service = service
        self.new_path = new_path.resolve()
        self.options = options
        self.report = report
        if options.inject is not None:
            parse_fault(options.inject)  # a bad spec fails here, not in the canary's processes
        self.state = check_rehearsal(system, service, self.new_path, options.state_root)
        self.dir = system_dir(system, options.state_root)
        svc = system.services[service]
        self.rollout = svc.rollout
        self.metrics = template_metrics(system, service)
        analysis = effective_analysis(system, service)
        limits = {m["name"]: m["max"] for m in analysis_metrics(service, analysis)}
        for m in self.metrics:
            m["limit"] = limits[m["name"]]  # the number in the template's conditions, for the printout
        self.interval_s = options.interval_s or seconds(analysis.interval)
        self.stable_urls = [r["url"] for r in self.state["services"][service]]
        self.stable_hash = pod_template_hash(str(system.service_dir(service).resolve()), "stable")
        self.canary_hash = pod_template_hash(str(self.new_path), options.inject or "", "canary")
        self.canary_urls: list[str] = []
        self.canary_platform_urls: list[str] = []  # where Prometheus scrapes each canary process
        self.supervisor = Supervisor(self.dir / "logs", echo=False)
        self.admin = self.state["gateway_admin"]
        self.prometheus_url = self.state["prometheus"]

    # ------------------------------------------------------------------ the pieces

    def _canary_env(self, port: int, platform_port: int) -> dict[str, str]:
        services = {s: [r["url"] for r in recs] for s, recs in self.state["services"].items()}
        endpoints = Endpoints(gateway_url=self.state["gateway"], resource_urls=dict(self.state["resources"]),
                              service_urls=services)
        env = service_env(self.system, self.service, endpoints, port=port, platform_port=platform_port)
        secret = json.loads((self.dir / "gateway.json").read_text()).get("edge_proof_secret")
        if secret:  # as the runner does: the canary trusts the gateway's proof that it checked the token
            env[EDGE_PROOF_ENV] = secret
        env["PYTHONPATH"] = os.pathsep.join([str(self.new_path), os.environ.get("PYTHONPATH", "")])
        if self.options.inject:
            env[FAULT_ENV] = self.options.inject
        return env

    async def _start_canary(self) -> None:
        """Start one canary process per stable replica; RolloutError if it crash-loops or is not ready in time."""
        svc = self.system.services[self.service]
        starts = []
        for i in range(len(self.stable_urls)):
            # Two ports, as the runner gives every replica: traffic on one, metrics and readiness on the other.
            port, platform_port = free_port(), free_port()
            url, platform = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{platform_port}"
            self.canary_urls.append(url)
            self.canary_platform_urls.append(platform)
            name = f"{self.service}-canary" + (f"-{i + 1}" if len(self.stable_urls) > 1 else "")
            spec = ProcessSpec(name=name, argv=[sys.executable, "-m", "stackwright.runtime.serve", svc.app,
                                                "--port", str(port), "--platform-port", str(platform_port)],
                               env=self._canary_env(port, platform_port), cwd=self.new_path,
                               ready=lambda u=platform: _http_ok(f"{u}/readyz"),
                               stop_timeout_s=svc.graceful_shutdown_s)
            start = self.supervisor.start(spec, ready_timeout_s=self.options.ready_timeout_s)
            starts.append(asyncio.ensure_future(start))
        pending = set(starts)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=0.2)
            for task in done:
                if task.exception() is not None:
                    raise RolloutError(f"the canary did not become ready: {task.exception()}")
            looping = {n: m for n, m in self.supervisor.procs.items() if m.restarts >= CRASH_LOOP_RESTARTS}
            if looping:
                for task in pending:
                    task.cancel()
                name, m = next(iter(looping.items()))
                code = m.proc.returncode if m.proc else None
                raise RolloutError(f"the canary is crash-looping: {name} exited {m.restarts + 1} times "
                                   f"(last exit code {code}); see {self.dir / 'logs' / (name + '.log')}")

    def _prometheus(self, with_canary: bool) -> LocalPrometheus:
        # Scraped where the runner's Prometheus scrapes them: each replica's platform port (its /metrics).
        targets = {s: [(r.get("platform_url") or r["url"]).removeprefix("http://") for r in recs]
                   for s, recs in self.state["services"].items()}
        targets["edge"] = [self.admin.removeprefix("http://")]
        labels: dict[str, dict[str, str]] = {}
        if with_canary:
            canary = [u.removeprefix("http://") for u in self.canary_platform_urls]
            targets[self.service] = targets[self.service] + canary
            labels = {t: {HASH_METRIC_LABEL: self.stable_hash} for t in targets[self.service]}
            labels.update({t: {HASH_METRIC_LABEL: self.canary_hash} for t in canary})
        scrape = (self.options.scrape_interval or DEFAULT_SCRAPE) if with_canary else DEFAULT_SCRAPE
        port = int(self.prometheus_url.rsplit(":", 1)[1])
        return LocalPrometheus(self.system, targets, self.dir / "prometheus", port=port, scrape_interval=scrape,
                               target_labels=labels)

    def _relabel(self, with_canary: bool) -> None:
        """Rewrite the running Prometheus' scrape config (with or without the canary) and reload it."""
        self._prometheus(with_canary).write_config()
        try:
            httpx.post(f"{self.prometheus_url}/-/reload", timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            raise RolloutError(f"Prometheus at {self.prometheus_url} did not reload its configuration: {exc}") from exc

    def _set_weight(self, weight: int) -> None:
        try:
            if weight:
                resp = httpx.put(f"{self.admin}/canary/{self.service}", timeout=5,
                                 json={"urls": self.canary_urls, "weight": weight})
            else:
                resp = httpx.delete(f"{self.admin}/canary/{self.service}", timeout=5)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise RolloutError(f"the gateway's admin port {self.admin} refused the weight change: {exc}") from exc
        set_now = resp.json().get(self.service, {}).get("weight", 0)
        if set_now != weight:
            raise RolloutError(f"the gateway reports weight {set_now}% for {self.service}, not {weight}%")

    async def _first_scrape(self, timeout_s: float) -> None:
        """Wait until Prometheus has scraped every canary replica (``up`` is 1): the background analysis starts
        then, so a shortened interval does not spend its inconclusive measurements before the first scrape."""
        promql = f'sum(up{{job="{self.service}",{HASH_METRIC_LABEL}="{self.canary_hash}"}})'
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                result = await asyncio.to_thread(query, self.prometheus_url, promql)
            except PrometheusError:
                result = []
            if result and float(result[0]["value"][1]) >= len(self.canary_urls):
                return
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ the run

    async def run(self) -> RehearsalResult:
        """Rehearse the rollout; always leaves the system as it found it (see the module docstring)."""
        analysis = Analysis(self.metrics, self.canary_hash, self.stable_hash)
        result = RehearsalResult("aborted", "", self.canary_hash, self.stable_hash,
                                 {m["name"]: m["provider"]["prometheus"]["query"] for m in self.metrics},
                                 dict(analysis.ran))
        say = self.report
        overrides = self.options.overrides()
        say(f"rollout {self.system.name}/{self.service}: stable {self.stable_hash} ({self.stable_urls[0]}"
            f"{' …' if len(self.stable_urls) > 1 else ''}) -> canary {self.canary_hash} from {self.new_path}"
            + (f", injected fault {self.options.inject}" if self.options.inject else ""))
        steps = " -> ".join(f"setWeight {s.weight} / pause {self.options.pause_s or seconds(s.pause):g}s"
                            for s in self.rollout.steps)
        say(f"  steps: {steps}; analysis every {self.interval_s:g}s"
            + (f" (rehearsal overrides: {', '.join(overrides)})" if overrides else ""))
        try:
            try:
                await self._start_canary()
            except RolloutError as exc:
                result.reason = str(exc)
                return result
            say(f"  canary ready: {', '.join(self.canary_urls)}")
            await asyncio.to_thread(self._relabel, True)
            await self._steps(analysis, result)
            return result
        except RolloutError as exc:
            result.outcome, result.reason = "aborted", str(exc)
            return result
        finally:
            await self._restore()
            verdict = {"promoted": "PROMOTED", "aborted": "ABORTED", "paused": "PAUSED"}[result.outcome]
            say(f"{verdict}: {result.reason}")

    async def _steps(self, analysis: Analysis, result: RehearsalResult) -> None:
        say = self.report
        started = time.monotonic()
        next_measure: float | None = None
        scrape_wait = 3 * seconds(self.options.scrape_interval or DEFAULT_SCRAPE) + 5
        steps = list(self.rollout.steps)
        index = 0
        step_end = 0.0
        weight = 0
        finishing = False  # all steps done: measuring until every gate has passed once (or a limit is hit)
        while True:
            now = time.monotonic()
            if not finishing and now >= step_end:
                if index == len(steps):
                    finishing = True
                else:
                    weight = steps[index].weight
                    await asyncio.to_thread(self._set_weight, weight)
                    pause = self.options.pause_s or seconds(steps[index].pause)
                    index += 1
                    step_end = time.monotonic() + pause
                    say(f"step {index}/{len(steps)}: setWeight {weight} -> pause {pause:g}s")
                    if next_measure is None:
                        await self._first_scrape(scrape_wait)
                        next_measure = time.monotonic()
            if finishing and analysis.every_gate_passed():
                result.outcome = "promoted"
                result.reason = (f"every step passed ({', '.join(str(s.weight) + '%' for s in steps)}) and every gate "
                                 "measured a pass; production would now send 100% to the canary and scale the old "
                                 "version down (locally the system's own processes keep serving; the canary stops)")
                return
            if next_measure is not None and time.monotonic() >= next_measure:
                measured = await asyncio.to_thread(analysis.measure, self.prometheus_url)
                t = time.monotonic() - started
                say(f"  t+{t:4.0f}s weight {weight:3d}%  " + "  ".join(_show(m) for m in measured))
                result.measurements.append({"step": index, "weight": weight, "t_s": round(t, 1),
                                            "results": [m.__dict__ for m in measured]})
                next_measure += self.interval_s
                if analysis.phase in (FAILED, ERROR):
                    result.outcome, result.reason = "aborted", f"analysis {analysis.phase.lower()}: {analysis.reason}"
                    return
                if analysis.phase == INCONCLUSIVE:
                    result.outcome = "paused"
                    result.reason = (f"analysis inconclusive: {analysis.reason}. Argo Rollouts would hold the canary "
                                     f"at {weight}% until someone promotes or aborts it; the rehearsal cannot wait "
                                     "for a person, so it hands all traffic back to stable")
                    return
            await asyncio.sleep(0.1)

    async def _restore(self) -> None:
        """All traffic back to stable, canary stopped, Prometheus' own configuration back."""
        errors = []
        try:
            await asyncio.to_thread(self._set_weight, 0)
        except RolloutError as exc:
            errors.append(str(exc))
        await self.supervisor.stop_all()
        try:
            await asyncio.to_thread(self._relabel, False)
        except RolloutError as exc:
            errors.append(str(exc))
        if errors:
            self.report("warning: " + "; ".join(errors))
        else:
            self.report(f"  traffic back on stable ({len(self.stable_urls)} process(es)); canary stopped")


def _show(m: Measurement) -> str:
    if m.value is None:
        return f"{m.metric} {m.phase.lower()} ({m.detail})"
    op = "<=" if m.phase == SUCCESSFUL else ">"
    if m.metric.startswith("latency"):
        shown = f"{m.value * 1000:.0f}ms {op} {m.limit * 1000:.0f}ms"
    else:
        shown = f"{m.value:.4f} {op} {m.limit:g}"
    return f"{m.metric} {shown} {'ok' if m.phase == SUCCESSFUL else m.phase.upper()}"
