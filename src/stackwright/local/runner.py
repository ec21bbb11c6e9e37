"""``stackwright up``: bring a whole system up on this machine, in order, and keep it running.

backing services -> databases + migrations -> edge gateway -> services in dependency order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from ..contract import EDGE_PROOF_ENV
from ..deploy.routes import edge_table, production_only, table_to_dict
from ..http_client import async_client
from ..resources import kind_of
from ..runtime.settings import resource_env
from ..spec import System, start_order
from ..spec.quantities import bytes_size
from .backing import LocalPostgres, LocalRedis, LocalSMTP, LocalSNS
from .backing.smtp import smtp_ready
from .backing.sns import sns_ready
from .ports import free_port, port_in_use
from .routing import host_urls
from .state import claim, process_start, read_state, runner_alive, spec_folder_of, write_state
from .supervisor import ProcessSpec, Supervisor
from .wiring import Endpoints, service_env


@dataclass
class UpOptions:
    """Knobs of ``stackwright up``."""

    port: int = 8080
    postgres_url: str | None = None
    redis_url: str | None = None
    redis_fsync: str = "always"  # see stackwright.local.backing.redis
    scale: dict[str, int] = field(default_factory=dict)
    echo_logs: bool = True
    monitoring: bool = False
    state_root: Path | None = None
    # Per-queue visibility timeout overrides in seconds (fault drills: redeliveries in seconds, not minutes).
    visibility_timeouts: dict[str, float] = field(default_factory=dict)
    dashboard: bool = True
    dashboard_port: int | None = None  # None: a free one
    # Multi-region runs (stackwright.local.regions): the region this run plays (None: the primary, alone),
    # the primary's Postgres prepared for streaming standbys, and the <R>_READ_URL of a secondary region's
    # replica per resource.
    region: str | None = None
    replication: bool = False
    read_urls: dict[str, str] = field(default_factory=dict)
    # Resources whose store this run uses instead of provisioning its own (a region sharing the primary's).
    shared_urls: dict[str, str] = field(default_factory=dict)


class StartError(RuntimeError):
    """The system could not be started; the message says which step failed and where its log is."""


class LocalSystem:
    """A running local copy of a system."""

    def __init__(self, system: System, options: UpOptions, report: Callable[[str], None] = print) -> None:
        self.system = system
        self.options = options
        self.report = report
        self.dir = claim(system, options.state_root).resolve()
        self.supervisor = Supervisor(self.dir / "logs", echo=options.echo_logs, on_event=self._on_event)
        self.endpoints = Endpoints(gateway_url=f"http://127.0.0.1:{options.port}")
        # The gateway's own health and metrics: a local-only port production has no equivalent of.
        self.gateway_admin_url: str | None = None
        self.backing: dict[str, dict[str, Any]] = {}
        self.steps: list[str] = []
        self.status = "starting"
        self.prometheus: Any = None
        self.dashboard_url: str | None = None
        self.started = process_start(os.getpid())
        # Per run, known to the gateway and the services only: the services accept the gateway's proof that
        # it verified a token (runtime.auth.EdgeProof) instead of verifying it a second time.
        self.edge_secret = secrets.token_hex(32)
        # Added to the run's state by the multi-region run (its regions, the global entry).
        self.extra_state: dict[str, Any] = {}
        # Run first by stop() (the other regions of a multi-region run stop before this one).
        self.before_stop: list[Callable[[], Awaitable[None]]] = []
        # (label, step) run last by start(), before the run is ready (the other regions of a multi-region run).
        self.extra_steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        # More --monitoring scrape jobs: job -> (host:port, metrics path) (the global entry's replication lag).
        self.extra_scrape: dict[str, tuple[str, str]] = {}
        # The processes start() stopped when it was interrupted (Ctrl-C, SIGTERM), in the order it stopped them.
        self.stopped_on_interrupt: list[str] = []

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Start everything; on failure stop what was started and raise StartError.

        Processes left running by an earlier run whose runner was killed (recorded with their start
        times, so a reused pid is never touched) are stopped first: they hold the ports and the data.
        """
        if self.dir.name != self.system.name:
            self.report(f"  data and state in {self.dir}: {self.dir.parent / self.system.name} belongs to "
                        f"the {self.system.name} in {spec_folder_of(self.dir.parent / self.system.name)}")
        await asyncio.to_thread(self._stop_leftovers)
        self._check_ports()
        try:
            await self._step("backing services", self._start_backing)
            await self._step("databases and migrations", self._prepare_databases)
            await self._step("edge gateway", self._start_gateway)
            for name in start_order(self.system):
                await self._step(f"service {name}", lambda n=name: self._start_service(n))
            if self.options.monitoring:
                await self._step("prometheus", self._start_prometheus)
            if self.options.dashboard and self.system.source is not None:
                await self._step("dashboard", self._start_dashboard)
            for label, extra in self.extra_steps:
                await self._step(label, extra)
        except asyncio.CancelledError:
            # Ctrl-C (asyncio.run cancels the main task) or SIGTERM while starting: stop what was started, in
            # order, rather than leave it to die with this process; the caller says what was stopped.
            self.stopped_on_interrupt = list(reversed(self.supervisor.pids()))  # stop() goes last to first
            await self.stop()
            raise
        except Exception as exc:
            self.status = "failed"
            self._save()
            await self.stop()
            if isinstance(exc, StartError):
                raise
            raise StartError(str(exc)) from exc
        self.status = "ready"
        self._save()

    def _check_ports(self) -> None:
        """The fixed ports this run asks for are free, before anything starts (a busy dashboard port was found
        only after every service had started, and all of them were stopped again)."""
        wanted = self.options.dashboard_port if self.options.dashboard and self.system.source is not None else None
        if wanted is not None and wanted == self.options.port:
            raise StartError(f"--dashboard-port {wanted} is the gateway's --port too; pass two different ports")
        if port_in_use(self.options.port):
            raise StartError(f"port {self.options.port} is already in use (by this or another system, or another "
                             f"program: try 'stackwright status {self.system.name}', or pass --port)")
        if wanted is not None and port_in_use(wanted):
            raise StartError(f"dashboard port {wanted} is already in use (pass another --dashboard-port, or leave "
                             "it out for a free one)")

    def _stop_leftovers(self) -> None:
        from .control import stop_leftovers

        state = read_state(self.system, self.options.state_root)
        if runner_alive(state):
            assert state is not None
            raise StartError(f"{self.system.name} is already being run by pid {state['runner_pid']} "
                             f"(stop it with 'stackwright down {self.system.name}')")
        stopped = stop_leftovers(state, data_dir=self.dir / "postgres")
        if stopped:
            self.report(f"  stopped what an earlier run left running: "
                        f"{', '.join(f'{n} (pid {pid})' for n, pid in stopped.items())}")

    async def _step(self, label: str, fn: Callable[[], Any]) -> None:
        began = time.monotonic()
        self.steps.append(f"… {label}")
        self._save()
        await fn()
        self.steps[-1] = f"✓ {label} ({time.monotonic() - began:.1f}s)"
        self.report(self.steps[-1])
        self._save()

    async def _start_backing(self) -> None:
        needs = set().union(*(kind_of(r).local_backing for r in self.system.resources.values()))
        needs_pg = "postgres" in needs
        needs_redis = "redis" in needs
        if needs_pg:
            if self.options.postgres_url:
                self.backing["postgres"] = {"url": self.options.postgres_url, "pid": None}
            else:
                pg = LocalPostgres(self.dir / "postgres", free_port())
                created = await asyncio.to_thread(pg.init)
                if created:
                    self.report("  initialised a new PostgreSQL data directory")
                if self.options.replication:
                    from .backing.replica import replication_conf

                    replication_conf(pg)
                await self.supervisor.start(ProcessSpec(
                    name="postgres", argv=pg.command(), spawn_kwargs=pg.process_kwargs(), cwd=pg.data_dir,
                    ready=lambda: _pg_ready(pg.url), stop_signal=signal.SIGINT, before_start=pg.before_start,
                ), ready_timeout_s=60)
                self.backing["postgres"] = {"url": pg.url, "pid": None, "data_dir": str(pg.data_dir)}
        if needs_redis:
            if self.options.redis_url:
                self.backing["redis"] = {"url": self.options.redis_url, "pid": None}
            else:
                rd = LocalRedis(self.dir / "redis", free_port(), fsync=self.options.redis_fsync)
                await self.supervisor.start(ProcessSpec(
                    name="redis", argv=rd.command(), ready=lambda: _redis_ready(rd.url)), ready_timeout_s=30)
                self.backing["redis"] = {"url": rd.url, "pid": None}
        if "smtp" in needs:
            smtp = LocalSMTP(self.dir / "mail", free_port())
            await self.supervisor.start(ProcessSpec(
                name="smtp", argv=smtp.command(), ready=lambda: smtp_ready(smtp.port)), ready_timeout_s=30)
            self.backing["smtp"] = {"url": smtp.url, "pid": None, "maildir": str(smtp.maildir)}
        if "sns" in needs:
            sns = LocalSNS(self.dir / "sms", free_port())
            await self.supervisor.start(ProcessSpec(
                name="sns", argv=sns.command(), ready=lambda: sns_ready(sns.port)), ready_timeout_s=60)
            self.backing["sns"] = {"url": sns.url, "pid": None, "sms_dir": str(sns.folder)}

    async def _prepare_databases(self) -> None:
        urls = self.endpoints.resource_urls
        for name, res in self.system.resources.items():
            url = self.options.shared_urls.get(name) or await kind_of(res).provision_local(
                name, res, self._local_context())
            if url is not None:
                urls[name] = url
        for name in self.system.services:
            count = max(1, self.options.scale.get(name, 1))
            self.endpoints.service_urls[name] = [f"http://127.0.0.1:{free_port()}" for _ in range(count)]
            self.endpoints.platform_urls[name] = [f"http://127.0.0.1:{free_port()}" for _ in range(count)]

    def _local_context(self) -> _KindContext:
        return _KindContext(system=self.system, state_dir=self.dir, backing=self.backing, report=self.report)

    def gateway_config(self) -> dict[str, Any]:
        """The route table, limits and identity the gateway process runs with."""
        system = self.system
        ident = system.edge.identity
        if self.gateway_admin_url is None:
            self.gateway_admin_url = f"http://127.0.0.1:{free_port()}"
        config: dict[str, Any] = {
            "port": self.options.port,
            "admin_port": int(self.gateway_admin_url.rsplit(":", 1)[1]),
            # The rules the rendered ALB Ingress has too (stackwright.deploy.routes), computed here once.
            **table_to_dict(edge_table(system)),
            "upstreams": {s: urls for s, urls in self.endpoints.service_urls.items() if system.services[s].routes},
            "max_body": bytes_size(system.edge.max_body),
            "rate_limits": {n: rl.model_dump() for n, rl in system.edge.rate_limits.items()},
            "default_rate_limit": system.edge.default_rate_limit,
            "idp_key_file": str(self.dir / "idp-key.pem"),
            "edge_proof_secret": self.edge_secret,
        }
        if ident is not None:
            config["identity"] = {"issuer": ident.issuer, "audience": ident.audience,
                                  "algorithms": ident.algorithms, "roles_claim": ident.roles_claim,
                                  "mount": ident.local_mount}
            config["jwks_url"] = f"{self.endpoints.gateway_url}{ident.local_mount.rstrip('/')}/.well-known/jwks.json"
        return config

    async def _start_gateway(self) -> None:
        path = self.dir / "gateway.json"
        path.touch(mode=0o600)  # it holds the edge proof secret
        path.chmod(0o600)
        path.write_text(json.dumps(self.gateway_config(), indent=2, sort_keys=True))
        admin = self.gateway_admin_url
        await self.supervisor.start(ProcessSpec(
            name="gateway", argv=[sys.executable, "-m", "stackwright.local.gateway", str(path)],
            ready=lambda: _http_ok(f"{admin}/healthz")), ready_timeout_s=30)

    async def _start_service(self, name: str) -> None:
        svc = self.system.services[name]
        cwd = self.system.service_dir(name)
        if not cwd.is_dir():
            raise StartError(f"service '{name}': folder {cwd} does not exist")
        urls = self.endpoints.service_urls[name]
        starts = []
        for i, (url, platform) in enumerate(zip(urls, self.endpoints.platform_urls[name], strict=True)):
            port, platform_port = int(url.rsplit(":", 1)[1]), int(platform.rsplit(":", 1)[1])
            env = service_env(self.system, name, self.endpoints, port=port, platform_port=platform_port)
            env[EDGE_PROOF_ENV] = self.edge_secret
            if self.options.region is not None:
                region = next(r for r in self.system.regions if r.name == self.options.region)
                env.update(REGION=region.name, REGION_ROLE=region.role)
                env.update({resource_env(r, "READ_URL"): url for r, url in self.options.read_urls.items()
                            if r in svc.uses})
            for queue, timeout in self.options.visibility_timeouts.items():
                if queue in svc.uses:
                    env[resource_env(queue, "VISIBILITY_TIMEOUT")] = f"{timeout:g}"
            env["PYTHONPATH"] = os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])
            label = name if len(urls) == 1 else f"{name}-{i + 1}"
            starts.append(self.supervisor.start(ProcessSpec(
                name=label, argv=[sys.executable, "-m", "stackwright.runtime.serve", svc.app, "--port", str(port),
                                  "--platform-port", str(platform_port)],
                env=env, cwd=cwd, ready=lambda u=platform: _http_ok(f"{u}/readyz"),
                stop_timeout_s=svc.graceful_shutdown_s), ready_timeout_s=90))
        await asyncio.gather(*starts)

    async def _start_prometheus(self) -> None:
        try:
            from ..monitoring.prometheus import LocalPrometheus
        except ImportError as exc:
            raise StartError(f"--monitoring needs stackwright.monitoring ({exc})") from None
        targets = {s: [u.removeprefix("http://") for u in urls] for s, urls in self.endpoints.platform_urls.items()}
        if self.gateway_admin_url is not None:  # the gateway's metrics are on its local-only port
            targets["edge"] = [self.gateway_admin_url.removeprefix("http://")]
        paths = {}
        for job, (address, path) in self.extra_scrape.items():
            targets[job], paths[job] = [address], path
        port = 9090 if not port_in_use(9090) else free_port()
        self.prometheus = LocalPrometheus(self.system, targets, self.dir / "prometheus", port=port,
                                          metrics_paths=paths or None)
        await asyncio.to_thread(self.prometheus.start)

    async def _start_dashboard(self) -> None:
        """The dashboard (stackwright.local.dashboard) as one more supervised process on 127.0.0.1."""
        port = self.options.dashboard_port or free_port()
        if port_in_use(port):
            raise StartError(f"dashboard port {port} is already in use (pass another --dashboard-port)")
        url = f"http://127.0.0.1:{port}"
        await self.supervisor.start(ProcessSpec(
            name="dashboard", argv=[sys.executable, "-m", "stackwright.local.dashboard", str(self.system.source),
                                    str(self.dir), str(port)],
            ready=lambda: _http_ok(f"{url}/healthz"), stop_timeout_s=5), ready_timeout_s=30)
        self.dashboard_url = url

    # ------------------------------------------------------------------ run / stop

    def _on_event(self, message: str) -> None:
        self._save()

    def state(self) -> dict[str, Any]:
        """What status/down/demo/chaos need to know about this run."""
        pids = self.supervisor.pids()
        services: dict[str, list[dict[str, Any]]] = {}
        for name, urls in self.endpoints.service_urls.items():
            services[name] = []
            for i, (url, platform) in enumerate(zip(urls, self.endpoints.platform_urls[name], strict=True)):
                label = name if len(urls) == 1 else f"{name}-{i + 1}"
                services[name].append({"url": url, "platform_url": platform, "pid": pids.get(label),
                                       "process": label})
        backing = {k: {**v, "pid": pids.get(k, v.get("pid"))} for k, v in self.backing.items()}
        return {
            "system": self.system.name, "spec": str(self.system.source), "status": self.status,
            "runner_pid": os.getpid(), "runner_start": self.started, "processes": self.supervisor.processes(),
            "gateway": self.endpoints.gateway_url, "gateway_admin": self.gateway_admin_url, "steps": self.steps,
            # Routes limited to a host answer on <label>.localhost at the gateway's port; what the production
            # edge adds that the gateway does not apply (the WAF) is listed so that nobody tests for it here.
            "hosts": host_urls(self.system, self.endpoints.gateway_url),
            "production_only": production_only(self.system),
            "services": services, "backing": backing, "resources": self.endpoints.resource_urls,
            "restarts": self.supervisor.restarts(), "updated_at": time.time(),
            "prometheus": getattr(self.prometheus, "url", None), "dashboard": self.dashboard_url,
            **self.extra_state,
        }

    def _save(self) -> None:
        write_state(self.system, self.state(), self.options.state_root)

    async def run_until_signalled(self) -> None:
        """Block until SIGINT/SIGTERM, then stop everything."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.report("stopping …")
        await self.stop()

    async def stop(self) -> None:
        """Stop every process (gateway and services first, backing services last)."""
        for hook in self.before_stop:
            await hook()
        if self.prometheus is not None:
            await asyncio.to_thread(self.prometheus.stop)
        await self.supervisor.stop_all()
        if self.status != "failed":
            self.status = "stopped"
        self._save()


@dataclass
class _KindContext:
    """What a resource kind's local provisioning hook gets (:class:`stackwright.resources.LocalContext`)."""

    system: System
    state_dir: Path
    backing: dict[str, dict[str, Any]]
    report: Callable[[str], None]


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` on the server at ``admin_url`` unless it exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _pg_ready(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=1)
    await conn.close()
    return True


async def _redis_ready(url: str) -> bool:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)  # a stopped Redis: not ready
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def _http_ok(url: str) -> bool:
    async with async_client(timeout=1.0) as client:
        return (await client.get(url)).status_code == 200
