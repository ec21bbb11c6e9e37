"""Collect what the dashboard shows: each process's health, restarts, pid and uptime (from the run's state
file and the processes themselves) and each service's request, latency, error and queue figures (from
their ``/metrics``).

It works only while someone looks: a snapshot is taken when the page asks (about once a second) and
shared by every viewer for :data:`FRESH_S`, so an idle dashboard costs the system nothing. Everything is
read with short timeouts and every failure becomes a status ("down", "starting"), never an exception, so
a process that is down or restarting shows as such and the page keeps working.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ...http_client import async_client
from ...resources import kind_of
from ...spec import System
from ..state import runner_alive, same_process
from . import metrics, promql
from .layout import EDGE_ID, resource_node_id, service_node_id

# A snapshot younger than this is served again rather than re-collected (several viewers, one scrape).
FRESH_S = 0.4
# Rates and p95 are over the readings of about this many seconds (older ones are kept no longer).
WINDOW_S = 10.0
TIMEOUT_S = 0.8
# Processes of the tooling, not of the system: listed with the others but drawn nowhere.
GATEWAY = "gateway"
NONE = "-"  # a figure that is not known (yet)


@dataclass
class Proc:
    """What the dashboard knows about one process of the run."""

    name: str
    role: str  # "service" | "gateway" | "backing" | "tool"
    service: str | None = None  # for role "service": which service it is a replica of
    url: str | None = None
    pid: int | None = None
    alive: bool = False
    health: str = "down"  # up | not ready | starting | down | stopped
    restarts: int = 0
    uptime_s: float | None = None
    reading: metrics.Reading | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "service": self.service, "url": self.url, "pid": self.pid,
                "alive": self.alive, "health": self.health, "restarts": self.restarts, "uptime_s": self.uptime_s}


def uptime(pid: int) -> float | None:
    """Seconds since ``pid`` started (Linux: its start in clock ticks since boot, against /proc/uptime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0.0, since_boot - int(fields[19]) / os.sysconf("SC_CLK_TCK"))


@dataclass
class Collector:
    """Snapshots of one local run, for the dashboard app (see the module docstring)."""

    system: System
    state_dir: Path
    _history: dict[str, deque[metrics.Reading]] = field(default_factory=dict)
    _snapshot: dict[str, Any] | None = None
    _taken: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _state(self) -> dict[str, Any] | None:
        """The run's state file (written atomically by the runner on every start, crash and restart)."""
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def processes(self, state: dict[str, Any] | None) -> list[Proc]:
        """Every process of the run, from the state file, with pid, liveness, restarts and uptime filled in."""
        if not state:
            return []
        running = runner_alive(state)
        live = state.get("processes") or {}
        restarts = state.get("restarts") or {}
        procs: dict[str, Proc] = {}
        for name in restarts:
            procs[name] = Proc(name, "tool")
        for name in state.get("backing") or {}:
            procs.setdefault(name, Proc(name, "backing")).role = "backing"
        gw = procs.setdefault(GATEWAY, Proc(GATEWAY, "gateway"))
        # Its health and metrics are on its local-only port (the public one answers what the ALB answers).
        gw.role, gw.url = "gateway", state.get("gateway_admin")
        for service, replicas in (state.get("services") or {}).items():
            for rep in replicas:
                p = procs.setdefault(rep["process"], Proc(rep["process"], "service"))
                # Readiness and metrics are on the replica's platform port (the application port answers 404).
                p.role, p.service, p.url = "service", service, rep.get("platform_url") or rep.get("url")
        for p in procs.values():
            p.restarts = int(restarts.get(p.name, 0))
            rec = live.get(p.name)
            if running and rec and same_process(rec.get("pid"), rec.get("start")):
                p.pid, p.alive = rec["pid"], True
                p.uptime_s = uptime(rec["pid"])
                p.health = "up"
            else:
                p.health = "down" if running else "stopped"
        order = {"gateway": 0, "service": 1, "backing": 2, "tool": 3}
        return sorted(procs.values(), key=lambda p: (order[p.role], p.name))

    async def _probe(self, client: httpx.AsyncClient, proc: Proc) -> None:
        """Readiness and a metrics reading of one live service or gateway process."""
        if not proc.alive or not proc.url:
            return
        health_path = "/healthz" if proc.role == "gateway" else "/readyz"
        metrics_path = "/metrics"
        try:
            resp = await client.get(proc.url + health_path)
            proc.health = "up" if resp.status_code == 200 else "not ready"
        except httpx.HTTPError:
            # Alive but not answering: just (re)started and still importing, or stuck.
            proc.health = "starting"
            return
        try:
            resp = await client.get(proc.url + metrics_path)
            if resp.status_code == 200:
                proc.reading = metrics.parse(resp.text, time.time())
        except (httpx.HTTPError, ValueError):
            pass

    def _delta(self, proc: Proc) -> metrics.Delta | None:
        """The process's figures over the window, from its reading history (reset when its pid changes)."""
        if proc.reading is None:
            return None
        key = f"{proc.name}:{proc.pid}"
        for stale in [k for k in self._history if k.split(":")[0] == proc.name and k != key]:
            del self._history[stale]
        hist = self._history.setdefault(key, deque())
        hist.append(proc.reading)
        while len(hist) > 2 and proc.reading.at - hist[1].at >= WINDOW_S:
            hist.popleft()
        old = hist[0] if len(hist) > 1 else None
        return metrics.window(old, proc.reading)

    async def snapshot(self) -> dict[str, Any]:
        """The current picture (shared for :data:`FRESH_S` between callers)."""
        async with self._lock:
            if self._snapshot is not None and time.monotonic() - self._taken < FRESH_S:
                return self._snapshot
            self._snapshot = await self._collect()
            self._taken = time.monotonic()
            return self._snapshot

    async def _collect(self) -> dict[str, Any]:
        state = await asyncio.to_thread(self._state)
        procs = await asyncio.to_thread(self.processes, state)
        prom_url = (state or {}).get("prometheus")
        async with async_client(timeout=TIMEOUT_S) as client:
            # Processes are always probed (health, queues); with --monitoring the route figures come from
            # Prometheus, falling back to the dashboard's own readings when it cannot answer.
            _, prom = await asyncio.gather(asyncio.gather(*(self._probe(client, p) for p in procs)),
                                           promql.query_figures(client, prom_url) if prom_url else _none())
        deltas = {p.name: self._delta(p) for p in procs}
        return build_snapshot(self.system, state, procs, deltas, prom)


async def _none() -> None:
    return None


_WORST = ["stopped", "down", "starting", "not ready", "up"]


def _worst(healths: list[str]) -> str:
    return min(healths, key=_WORST.index) if healths else "down"


def _fmt_rate(stats: metrics.RouteStats) -> str:
    p95 = NONE if stats.p95_ms is None else f"{stats.p95_ms:.0f}ms"
    err = NONE if stats.error_share is None else f"{stats.error_share * 100:.1f}%"
    return f"{stats.rps:.1f}/s · p95 {p95} · err {err}"


def _fmt_uptime(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _figures(name: str, delta: metrics.Delta,
             prom: dict[str, dict[str, Any]] | None) -> tuple[metrics.RouteStats, list[metrics.RouteStats]]:
    """Overall and per-route figures of one app: Prometheus' when given, else the dashboard's own."""
    if prom is None:
        return delta.overall(), delta.routes()
    figs = prom.get(name)
    if figs is None:
        return metrics.RouteStats("*", "*", 0.0, None, None, 0.0), []
    return figs["overall"], figs["routes"]


def build_snapshot(system: System, state: dict[str, Any] | None, procs: list[Proc],
                   deltas: dict[str, metrics.Delta | None],
                   prom: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON the page renders: processes, per-service figures and routes, queues, and per topology node
    its health and two lines of text (computed here so the page's script only copies them in). ``prom``:
    route figures from Prometheus (:mod:`.promql`), used instead of ``deltas`` when given."""
    by_service: dict[str, list[Proc]] = {}
    for p in procs:
        if p.role == "service" and p.service:
            by_service.setdefault(p.service, []).append(p)
    services: dict[str, Any] = {}
    nodes: dict[str, dict[str, str]] = {}
    queues: dict[str, dict[str, float]] = {}
    # The runtime labels queue gauges with the queue's real name (the kind's local_name, e.g. <system>-<queue>).
    resource_of = {kind_of(r).local_name(system, n) or n: n for n, r in system.resources.items()}
    for p in procs:
        for queue, gauges in (p.reading.queues if p.reading else {}).items():
            mine = queues.setdefault(resource_of.get(queue, queue), {})
            for k, v in gauges.items():
                # Several replicas report the same queue; the largest figure is the one that matters.
                mine[k] = max(mine.get(k, v), v)
    for name in system.services:
        reps = by_service.get(name, [])
        delta = metrics.combine(d for p in reps if (d := deltas.get(p.name)) is not None)
        overall, routes = _figures(name, delta, prom)
        health = _worst([p.health for p in reps])
        restarts = sum(p.restarts for p in reps)
        pids = [p.pid for p in reps if p.pid]
        uptimes = [p.uptime_s for p in reps if p.uptime_s is not None]
        services[name] = {"health": health, "restarts": restarts, "pids": pids,
                          "uptime_s": min(uptimes) if uptimes else None, "replicas": len(reps),
                          "overall": overall.to_dict(), "routes": [r.to_dict() for r in routes]}
        pid_text = ",".join(map(str, pids)) if pids else NONE
        msgs = delta.messages_per_s()
        services[name]["messages_per_s"] = msgs
        line2 = _fmt_rate(overall) if system.services[name].routes or overall.total else ""
        if msgs is not None and not line2:
            line2 = f"{msgs:.1f} msg/s"
        nodes[service_node_id(name)] = {
            "health": health,
            "line1": f"pid {pid_text} · up {_fmt_uptime(services[name]['uptime_s'])} · ↻{restarts}",
            "line2": line2,
        }
    gateway = next((p for p in procs if p.role == "gateway"), None)
    if gateway is not None:
        overall, _ = _figures("edge", deltas.get(gateway.name) or metrics.Delta(), prom)
        line1 = f"pid {gateway.pid or NONE} · up {_fmt_uptime(gateway.uptime_s)} · ↻{gateway.restarts}"
        nodes[EDGE_ID] = {"health": gateway.health, "line1": line1, "line2": _fmt_rate(overall)}
    backing = {p.name: p for p in procs if p.role == "backing"}
    for name, res in system.resources.items():
        needs = sorted(kind_of(res).local_backing)
        mine = [backing[b] for b in needs if b in backing]
        external = [b for b in needs if b in (state or {}).get("backing", {}) and b not in backing]
        if mine:
            health = _worst([p.health for p in mine])
            line1 = " · ".join(f"{p.name} pid {p.pid or NONE} ↻{p.restarts}" for p in mine)
        elif needs and not external and state:
            health, line1 = "down", "not running"
        else:
            health, line1 = ("up" if runner_alive(state) else "stopped"), ("external" if external else "local")
        line2 = ""
        if name in queues:
            q = queues[name]
            line2 = (f"depth {q.get('depth', 0):.0f} · dlq {q.get('dlq', 0):.0f} · "
                     f"lag {q.get('lag_s', 0):.1f}s")
        nodes[resource_node_id(name)] = {"health": health, "line1": line1, "line2": line2}
    status = (state or {}).get("status", "not started")
    if state and not runner_alive(state):
        status = "stopped"
    return {
        "system": system.name, "status": status, "gateway": (state or {}).get("gateway"),
        "prometheus": (state or {}).get("prometheus"), "taken_at": time.time(),
        "figures_from": (f"Prometheus, last {promql.RANGE}" if prom is not None
                         else f"the services' /metrics, last ~{WINDOW_S:.0f} s"),
        "processes": [p.to_dict() for p in procs], "services": services,
        "edge": nodes.get(EDGE_ID), "queues": queues, "nodes": nodes,
    }
