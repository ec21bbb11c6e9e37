"""Local commands: up, status, down, demo, token."""

from __future__ import annotations

import asyncio
import enum
import signal
import socket
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import term
from ..local.control import ControlError, running_state, start_detached, stop, stop_leftovers
from ..local.state import leftovers, read_state, runner_alive, system_dir
from ..resources import kind_of
from ..spec import System
from .common import SystemIdentity, console, fail, load, load_for_local_run, require_system_extras


class RedisFsync(enum.StrEnum):
    """``--redis-fsync`` choices (stackwright.local.backing.redis explains the trade-off)."""

    always = "always"
    everysec = "everysec"

SystemArg = Annotated[str, typer.Argument(help="System name (under systems/) or path to its system.yaml.")]
StateDir = Annotated[Path | None, typer.Option("--state-dir", help="Where local data lives (default .stackwright/).",
                                                 hidden=True)]


def _parse_scale(values: list[str]) -> dict[str, int]:
    scale: dict[str, int] = {}
    for item in values:
        name, _, count = item.partition("=")
        if not count.isdigit() or int(count) < 1:
            fail(f"--scale takes SERVICE=N with N >= 1 (got {item!r})")
        scale[name] = int(count)
    return scale


def _parse_visibility(values: list[str], spec: System) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        name, _, secs = item.partition("=")
        try:
            value = float(secs)
        except ValueError:
            value = -1.0
        if value <= 0:
            fail(f"--visibility-timeout takes QUEUE=SECONDS with SECONDS > 0 (got {item!r})")
        res = spec.resources.get(name)
        if res is None or not kind_of(res).dead_letters:
            queues = sorted(n for n, r in spec.resources.items() if kind_of(r).dead_letters)
            fail(f"--visibility-timeout names {name!r}, which is not a queue of {spec.name} "
                 f"(queues: {', '.join(queues) or 'none'})")
        out[name] = value
    return out


def up(
    system: SystemArg,
    port: Annotated[int, typer.Option(help="Port of the edge gateway.", min=1, max=65535)] = 8080,
    postgres_url: Annotated[str | None, typer.Option(envvar="STACKWRIGHT_POSTGRES_URL",
                                                     help="Use this PostgreSQL server, not an embedded one.")] = None,
    redis_url: Annotated[str | None, typer.Option(envvar="STACKWRIGHT_REDIS_URL",
                                                  help="Use this Redis server instead of an embedded one.")] = None,
    redis_fsync: Annotated[RedisFsync, typer.Option(
        help="When the embedded Redis fsyncs its append-only file: before every answer (always) or once a second "
             "(everysec: no disk stalls in latency; a machine crash can lose ~2 s).")] = RedisFsync.always,
    scale: Annotated[list[str], typer.Option(help="Run N replicas of a service: --scale vote=2.")] = [],  # noqa: B006
    monitoring: Annotated[bool, typer.Option(help="Also run Prometheus with rules from the spec.")] = False,
    visibility_timeout: Annotated[list[str], typer.Option(
        help="Override a queue's visibility timeout for fault drills: --visibility-timeout votes=2.")] = [],  # noqa: B006
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start in the background and return.")] = False,
    quiet_logs: Annotated[bool, typer.Option(help="Do not echo service logs (they still go to files).")] = False,
    dashboard: Annotated[bool, typer.Option(help="Serve the live dashboard on 127.0.0.1.")] = True,
    regions: Annotated[bool, typer.Option(
        "--regions", help="Run every region of the spec (a streaming Postgres replica, Redis, gateway and services "
                          "per region) behind a local global entry; default: the primary region only.")] = False,
    dashboard_port: Annotated[int | None, typer.Option(help="Port of the dashboard (default: a free one).", min=1,
                                                       max=65535)] = None,
    state_dir: StateDir = None,
) -> None:
    """Run the whole system on this machine: real Postgres and Redis, every service, the edge gateway."""
    spec = load(system)
    require_system_extras(spec)
    if running_state(spec, state_dir):
        fail(f"{spec.name} is already running (see 'stackwright status {spec.name}'; stop it with "
             f"'stackwright down {spec.name}')")
    busy = _in_progress(spec, read_state(spec, state_dir))
    if busy:  # a second run would fight the first one for its ports and data folder
        fail(busy)
    scale_map = _parse_scale(scale)
    visibility = _parse_visibility(visibility_timeout, spec)
    unknown = set(scale_map) - set(spec.services)
    if unknown:
        fail(f"--scale names unknown service(s): {', '.join(sorted(unknown))}")
    if detach:
        extra = [a for s in scale for a in ("--scale", s)] + (["--monitoring"] if monitoring else [])
        extra += [a for v in visibility_timeout for a in ("--visibility-timeout", v)]
        if postgres_url:
            extra += ["--postgres-url", postgres_url]
        if redis_url:
            extra += ["--redis-url", redis_url]
        extra += ["--redis-fsync", redis_fsync.value]
        extra += _dashboard_args(dashboard, dashboard_port) + (["--regions"] if regions else [])
        try:
            with console.status(f"starting {spec.name} in the background …"):
                state = start_detached(spec.source, port=port, extra_args=extra, state_root=state_dir,
                                       on_step=lambda s: console.print(s))
        except ControlError as exc:
            fail(str(exc))
        except KeyboardInterrupt:  # start_detached has stopped the background run (SIGTERM: it stops in order)
            console.print(f"interrupted while starting {spec.name} in the background: stopped it")
            raise typer.Exit(130) from None
        _print_ready(state)
        return
    from ..local.runner import LocalSystem, StartError, UpOptions

    options = UpOptions(port=port, postgres_url=postgres_url, redis_url=redis_url, redis_fsync=redis_fsync.value,
                        scale=scale_map,
                        echo_logs=not quiet_logs, monitoring=monitoring, state_root=state_dir,
                        visibility_timeouts=visibility, dashboard=dashboard, dashboard_port=dashboard_port,
                        replication=regions)

    async def main() -> None:
        local = LocalSystem(spec, options, report=lambda m: console.print(m))
        if regions:
            from ..local.regions import LocalRegions

            multi = LocalRegions(local, report=lambda m: console.print(m))
            local.before_stop.append(multi.stop)
            local.extra_steps.append(("regions and global entry", multi.start))
        # SIGTERM while starting (a detached run told to stop) interrupts the start as Ctrl-C does, so what was
        # started is stopped in order either way (until ready; then run_until_signalled handles both).
        main_task = asyncio.current_task()
        if main_task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        try:
            await local.start()
        except StartError as exc:
            fail(f"could not start {spec.name}: {exc}")
        except asyncio.CancelledError:
            stopped = local.stopped_on_interrupt
            console.print(f"interrupted while starting {spec.name}: "
                          + (f"stopped {', '.join(stopped)}" if stopped else "nothing had started yet"),
                          soft_wrap=True)
            raise typer.Exit(130) from None
        _print_ready(local.state())
        console.print("press Ctrl-C to stop")
        await local.run_until_signalled()

    asyncio.run(main())


def _in_progress(spec: System | SystemIdentity, state: dict | None) -> str | None:
    """What a run whose runner lives but is not ready is doing, in one line (``voting is starting: ...``),
    or None when there is no such run (up and ready, or not running at all).

    A foreground ``up`` writes its state from its first step, so ``status`` (or a second ``up``, or ``demo``)
    in another terminal sees it starting, failing or stopping rather than "not running"."""
    if not state or state.get("status") == "ready" or not runner_alive(state):
        return None
    steps = state.get("steps") or []
    done = sum(1 for step in steps if step.startswith("✓"))
    current = next((step.removeprefix("…").strip() for step in reversed(steps) if step.startswith("…")), None)
    pid = state.get("runner_pid")
    doing = {"failed": "failed to start and is stopping what it started", "stopped": "is stopping"}.get(
        str(state.get("status")), "is starting")
    progress = f": {done} step(s) done" + (f", now {current}" if current else "") if doing == "is starting" else ""
    return f"{spec.name} {doing}{progress} (runner pid {pid}; follow it with 'stackwright logs {spec.name} -f')"


def _print_ready(state: dict) -> None:
    console.print(f"[bold green]{state['system']} is up[/] at {state['gateway']}  "
                  f"(stop: stackwright down {state['system']})")
    if state.get("dashboard"):
        console.print(f"dashboard: {state['dashboard']}  (logs: stackwright logs {state['system']} -f)")
    for label, url in (state.get("hosts") or {}).items():
        console.print(f"routes on host {label}.: {url}")
    if state.get("gateway_admin"):  # not on the public port, which answers only what the ALB would
        console.print(f"gateway health and metrics (local only): {state['gateway_admin']}/healthz, /metrics")
    for note in state.get("production_only") or []:
        console.print(f"production only, not applied locally: {note}")


def _dashboard_args(dashboard: bool, port: int | None) -> list[str]:
    """The dashboard options of ``up``, passed on to the background run of ``up -d``."""
    if not dashboard:
        return ["--no-dashboard"]
    return ["--dashboard-port", str(port)] if port else []


def status(system: SystemArg, state_dir: StateDir = None) -> None:
    """Show whether a system is running, and the health of each process (exit 1 when it is not running or
    is still starting)."""
    spec = load_for_local_run(system)
    state = read_state(spec, state_dir)
    if not running_state(spec, state_dir) or state is None:
        busy = _in_progress(spec, state)
        if busy:  # not ready yet (or going away): exit 1 like "not running", since it serves nothing yet
            console.print(escape(busy), soft_wrap=True)  # text, not markup (a step label may hold brackets)
            raise typer.Exit(1)
        stale = leftovers(state)
        if stale:
            procs = ", ".join(f"{n} (pid {r['pid']})" for n, r in stale.items())
            fail(f"{spec.name} is not running, but its previous run was killed and left {len(stale)} stale "
                 f"process(es) running: {procs}; stop them with 'stackwright down {spec.name}'", code=1)
        console.print(f"{spec.name} is not running")
        raise typer.Exit(1)
    table = Table(title=f"{spec.name} at {state['gateway']}")
    for col in ("process", "url", "pid", "restarts", "ready", "dependencies"):
        table.add_column(col)
    with httpx.Client(timeout=1.0) as client:
        for procs in state["services"].values():
            for p in procs:
                ok, deps = _readiness(client, p.get("platform_url") or p["url"])
                table.add_row(p["process"], p["url"], str(p["pid"]), str(state["restarts"].get(p["process"], 0)),
                              _verdict(ok), deps)
        live = state.get("processes", {})
        for name, b in state["backing"].items():
            pid = (live.get(name) or {}).get("pid") or b.get("pid")
            table.add_row(name, b["url"], "" if pid is None else str(pid), str(state["restarts"].get(name, 0)),
                          _verdict(_accepts(b["url"])), "")
        for name, url in (("gateway", state.get("gateway_admin")), ("dashboard", state.get("dashboard"))):
            if name in live:  # the edge and the dashboard are processes of the run too (logs knows them)
                table.add_row(name, url or "", str(live[name]["pid"]), str(state["restarts"].get(name, 0)),
                              _verdict(bool(url) and _healthy(client, url)), "")
    # The table is the command's result: stdout, so `status > file` and `| grep` get it (messages stay on stderr).
    _stdout().print(table)
    if state.get("regions"):
        _print_regions(state)


def _stdout() -> Console:
    """A console for results (tables) on stdout; progress and errors go to ``console`` (stderr)."""
    return term.console()


def _print_regions(state: dict) -> None:
    """Regions of a multi-region run (up --regions): role, gateway, health at the global entry, replica lag."""
    from ..local.regions import region_status

    rows = asyncio.run(region_status(state))
    try:
        health = httpx.get(f"{state['global_entry']}/_global/regions", timeout=2).json()["regions"]
    except (httpx.HTTPError, ValueError, KeyError):
        health = {}
    writable = f", writable database in {state['writable_region']}" if state.get("writable_region") else ""
    table = Table(title=f"regions (global entry {state.get('global_entry')}{writable})")
    for col in ("region", "role", "gateway", "healthy", "lag bytes", "lag s", "streaming", "link"):
        table.add_column(col)
    for r in rows:
        ok = (health.get(r["region"]) or {}).get("healthy")
        table.add_row(r["region"], "[bold]primary[/]" if r["role"] == "primary" else r["role"], r["gateway"],
                      "" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]"),
                      "" if r["lag_bytes"] is None else str(r["lag_bytes"]),
                      "" if r["lag_seconds"] is None else f"{r['lag_seconds']:.2f}",
                      r.get("error") or ("" if r["streaming"] is None else ("yes" if r["streaming"] else "[red]no[/]")),
                      "[red]cut (partitioned)[/]" if r.get("partitioned") else "")
    _stdout().print(table)


def _verdict(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def _accepts(url: str) -> bool:
    """Whether a backing service (``postgresql://host:port/...``, ``redis://...``, ``http://...``) accepts a
    TCP connection within 1 s: what its clients need first, and all that every kind of them has in common."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def _healthy(client: httpx.Client, url: str) -> bool:
    """Whether the gateway's admin port or the dashboard answers ``/healthz`` with 200 (the client's timeout)."""
    try:
        return client.get(url + "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def _readiness(client: httpx.Client, url: str) -> tuple[bool, str]:
    """Whether a service is ready, and its last dependency checks (``cache failing: ConnectionError, db ok``):
    readiness does not follow dependencies, so this is where an outage shows."""
    try:
        resp = client.get(url + "/readyz")
    except httpx.HTTPError:
        return False, ""
    try:
        checks = resp.json().get("dependencies") or {}
    except ValueError:
        checks = {}
    deps = ", ".join(f"{n} ok" if verdict == "ok" else f"[red]{n} {verdict}[/]"
                     for n, verdict in sorted(checks.items()))
    return resp.status_code == 200, deps


def down(system: SystemArg, state_dir: StateDir = None) -> None:
    """Stop a running system (services, gateway, then Postgres and Redis). Data stays in .stackwright/."""
    spec = load_for_local_run(system, not_running_code=0)  # nothing to stop is not a failure of down
    state = read_state(spec, state_dir)
    if state is not None and not runner_alive(state):
        with console.status(f"stopping what the killed run of {spec.name} left behind …"):
            left = stop_leftovers(state, data_dir=system_dir(spec, state_dir) / "postgres")
        if left:
            console.print(f"{spec.name} was not running; stopped {len(left)} stale process(es) its killed run left: "
                          + ", ".join(f"{n} (pid {pid})" for n, pid in left.items()))
            return
    with console.status(f"stopping {spec.name} …"):
        stopped = stop(spec, state_dir)
    console.print(f"{spec.name} stopped" if stopped else f"{spec.name} was not running")


def token(
    system: SystemArg,
    sub: Annotated[str, typer.Option(help="Subject (user id) of the token.")] = "dev-user",
    role: Annotated[list[str], typer.Option(help="Role to grant; repeat for several.")] = [],  # noqa: B006
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
    claim: Annotated[list[str], typer.Option(
        help="Extra claim NAME=VALUE, e.g. --claim tenant_id=acme (payments' tenant); repeat for several.")] = [],  # noqa: B006
    state_dir: StateDir = None,
) -> None:
    """Mint a dev token signed by the local identity provider (prints the bare token)."""
    from ..local.idp import RESERVED_CLAIMS, DevIdP

    spec = load(system)
    if spec.edge.identity is None:
        fail(f"{spec.name} has no edge.identity, so it accepts no tokens")
    if ttl < 1:
        fail(f"--ttl must be at least 1 second, not {ttl}")
    if not sub.strip():
        fail("--sub must not be empty")
    known = sorted({r for svc in spec.services.values() for route in svc.routes for r in route.roles}
                   | set(spec.edge.identity.roles))
    unknown = [r for r in role if r not in known]
    if unknown:  # a typo here would mint a token that every role-gated route refuses, with no clue why
        fail(f"{spec.name} has no role {', '.join(map(repr, unknown))}; its routes and edge.identity.roles use: "
             f"{', '.join(known) or 'none'}")
    extra: dict[str, str] = {}
    reserved = RESERVED_CLAIMS | {spec.edge.identity.roles_claim}
    for item in claim:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--claim must be NAME=VALUE, not {item!r}")
        if name.strip() in reserved:
            fail(f"--claim {name.strip()!r} is set by the token itself (use --sub, --role or --ttl)")
        extra[name.strip()] = value
    ident = spec.edge.identity
    idp = DevIdP(system_dir(spec, state_dir) / "idp-key.pem", issuer=ident.issuer, audience=ident.audience,
                 roles_claim=ident.roles_claim)
    print(idp.mint(sub, list(role), ttl_s=ttl, extra=extra))


def demo(
    system: SystemArg,
    size: Annotated[int | None, typer.Option(
        help="How big the scenario is (what it counts depends on the system: voting counts voters).", min=1)] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 64,
    port: Annotated[int, typer.Option(help="Gateway port when the demo has to start the system.", min=1,
                                      max=65535)] = 8080,
    state_dir: StateDir = None,
) -> None:
    """Run the system's demo scenario (its demo.py plug-in), starting the system first if needed."""
    from ..local.demokit import DemoContext
    from ..plugins import PluginMissing, load_plugin

    spec = load(system)
    require_system_extras(spec)
    try:
        module = load_plugin(spec, "demo")
    except PluginMissing as exc:
        fail(str(exc))
    state = running_state(spec, state_dir)
    busy = None if state else _in_progress(spec, read_state(spec, state_dir))
    if busy:  # starting another run in the background would fight this one for its ports and data
        fail(f"{busy}; run the demo when it is up")
    started_here = state is None
    if state is None:
        console.print(f"{spec.name} is not running; starting it in the background")
        try:
            state = start_detached(spec.source, port=port, state_root=state_dir, on_step=lambda s: console.print(s))
        except ControlError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            console.print(f"interrupted: stopped {spec.name}, which this demo was starting")
            raise typer.Exit(130) from None
    console.print(f"{spec.name} at {state['gateway']}"
                  + (f"; dashboard {state['dashboard']}" if state.get("dashboard") else ""))
    ctx = DemoContext(system=spec, state=state, console=console, key_file=system_dir(spec, state_dir) / "idp-key.pem",
                      size=size or int(getattr(module, "DEFAULT_SIZE", 100)), concurrency=concurrency)
    began = time.monotonic()
    try:
        ok = asyncio.run(module.run(ctx))
    except KeyboardInterrupt:
        console.print(f"demo interrupted; {spec.name} keeps running in the background"
                      + (f"; stop it with: stackwright down {system}" if started_here else ""))
        raise typer.Exit(130) from None
    console.print(f"demo finished in {time.monotonic() - began:.1f}s: {'[green]PASS' if ok else '[red]FAIL'}")
    if started_here:  # left up on purpose, to look around (dashboard, curl); say how to stop it
        console.print(f"{spec.name} keeps running in the background; stop it with: stackwright down {system}")
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the local commands to the CLI."""
    app.command()(up)
    app.command()(status)
    app.command()(down)
    app.command()(demo)
    app.command()(token)

