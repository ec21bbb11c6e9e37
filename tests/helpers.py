"""Test helpers: serve a real ASGI app on a free loopback port in a background thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from stackwright.local.ports import free_port

# Issuer and audience of the dev identity provider in tests that verify tokens.
ISS, AUD = "https://issuer.example/", "https://api.example"


@contextlib.contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (on ``port`` or a free one) and yield its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def edge_config(port: int, key_file: Any, *, routes: list[dict[str, Any]], upstreams: dict[str, list[str]],
                rate_limits: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A gateway config with the dev IdP mounted at /auth (issuer ISS, audience AUD) and ``default_rate_limit``
    "open"; ``extra`` adds or overrides keys (e.g. ``max_body``)."""
    return {"port": port, "idp_key_file": str(key_file),
            "identity": {"issuer": ISS, "audience": AUD, "algorithms": ["RS256"], "roles_claim": "roles",
                         "mount": "/auth"},
            "jwks_url": f"http://127.0.0.1:{port}/auth/.well-known/jwks.json",
            "rate_limits": rate_limits, "default_rate_limit": "open", "routes": routes, "upstreams": upstreams,
            **extra}


def write_spec(folder: Path, text: str) -> Path:
    """Write ``text`` as ``folder/system.yaml`` (with an empty migrations/ folder beside it); return the path."""
    (folder / "migrations").mkdir(exist_ok=True)
    path = folder / "system.yaml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def wait_until(check: Any, timeout_s: float = 30.0, interval_s: float = 0.2) -> Any:
    """Poll ``check()`` every ``interval_s`` until it returns something truthy (returned); AssertionError
    when ``timeout_s`` passes first. For tests of running systems, where state settles asynchronously."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s:g} s")


@contextlib.contextmanager
def system_up(spec: Path, state_root: Path, *, env: dict[str, str] | None = None,
              extra_args: list[str] | None = None, timeout_s: float = 240) -> Iterator[dict[str, Any]]:
    """``stackwright up SPEC`` in the background under ``state_root`` on free ports; yields its state and stops it
    afterwards. ``env`` is set while the system starts (its processes inherit it) and restored before the tests
    run, so knobs meant for the services do not leak into the test process."""
    import pytest

    from stackwright.local.control import start_detached, stop

    with pytest.MonkeyPatch.context() as patch:
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        state = start_detached(spec, port=free_port(), state_root=state_root, timeout_s=timeout_s,
                               extra_args=list(extra_args or []))
    try:
        yield state
    finally:
        stop(str(state["system"]), state_root)


class SystemHandle:
    """What every system's tests hold of their running system: its spec, the state ``up`` wrote, the dev
    identity provider that signs its tokens, and an HTTP client on its gateway.

    ``client_timeout_s`` is the gateway client's timeout in seconds; ``headers`` its default headers."""

    def __init__(self, system: Any, state: dict[str, Any], state_root: Path, *, client_timeout_s: float = 30,
                 headers: dict[str, str] | None = None) -> None:
        import httpx

        from stackwright.local.idp import DevIdP

        self.system = system
        self.state = state
        self.state_root = state_root
        self.base: str = state["gateway"]
        ident = system.edge.identity
        assert ident is not None, "the system has no edge identity"
        self.idp = DevIdP(state_root / system.name / "idp-key.pem", issuer=ident.issuer, audience=ident.audience)
        self.client = httpx.Client(base_url=self.base, timeout=client_timeout_s, headers=headers)

    def fresh_state(self) -> dict[str, Any]:
        """The state as ``up`` has it now (pids change when the supervisor restarts a process)."""
        from stackwright.local.state import read_state

        state = read_state(self.system.name, self.state_root)
        assert state is not None, f"{self.system.name} is not running"
        return state

    def service_url(self, name: str) -> str:
        """Base URL of service ``name``'s first replica, bypassing the edge."""
        return str(self.fresh_state()["services"][name][0]["url"])

    def pid(self, name: str) -> int:
        """The current pid of service ``name``'s first replica."""
        return int(self.fresh_state()["services"][name][0]["pid"])

    def resource_sql(self, resource: str, query: str, *args: Any) -> list[Any]:
        """Rows of ``query`` run on the database resource ``resource`` (its admin URL)."""
        return sql(self.state["resources"][resource], query, *args)

    wait_until = staticmethod(wait_until)


@contextlib.contextmanager
def regions_up(spec: Path, state_root: Path, *, timeout_s: float = 300) -> Iterator[dict[str, Any]]:
    """``stackwright up SPEC --regions`` in the background under ``state_root`` (free ports); yields its state
    and stops it afterwards. For the systems' multi-region tests."""
    with system_up(spec, state_root, extra_args=["--regions", "--no-dashboard"], timeout_s=timeout_s) as state:
        yield state


def sql(url: str, query: str, *args: Any) -> list[Any]:
    """Run one query on its own connection to ``url`` and return the rows (for checks against real databases)."""
    import asyncio

    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def fastapi_app_using(dest: Path, name: str, resource: dict[str, Any] | None) -> Path:
    """Copy ``systems/fastapi-app`` to ``dest/fastapi-app`` with resource ``name`` (a ``resources:`` entry,
    e.g. ``{"kind": "mail", ...}``) used by its ``api`` service, or unchanged when ``resource`` is None;
    returns the copy's system.yaml (for kind tests that need a whole, loadable system)."""
    import shutil

    import yaml

    copy = dest / "fastapi-app"
    shutil.copytree(Path(__file__).resolve().parents[1] / "systems" / "fastapi-app", copy,
                    ignore=shutil.ignore_patterns(".stackwright"))
    spec = yaml.safe_load((copy / "system.yaml").read_text())
    if resource is not None:
        spec["resources"][name] = resource
        spec["services"]["api"]["uses"].append(name)
    (copy / "system.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy / "system.yaml"


def egress_443_anywhere(manifests: list[dict[str, Any]], service: str) -> bool:
    """Whether ``service``'s NetworkPolicy lets it out to 0.0.0.0/0 on TCP 443 (an AWS API without a VPC
    endpoint, such as SES or SNS)."""
    policy = next(m for m in manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].endswith(service))
    egress_443 = [r for r in policy["spec"]["egress"] if {"port": 443, "protocol": "TCP"} in r["ports"]]
    return any(to.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for r in egress_443 for to in r["to"])


@contextlib.asynccontextmanager
async def local_resources(system: Any, state_root: Path) -> AsyncIterator[dict[str, str]]:
    """Start what ``stackwright up`` starts for ``system``'s resources only (embedded servers, databases,
    folders; no services, no gateway) under ``state_root``; yields resource name -> ``<NAME>_URL`` and stops
    everything on exit."""
    from stackwright.local.runner import LocalSystem, UpOptions

    options = UpOptions(port=free_port(), state_root=state_root, echo_logs=False, dashboard=False)
    runner = LocalSystem(system, options, report=lambda line: None)
    try:
        await runner._start_backing()
        await runner._prepare_databases()
        yield runner.endpoints.resource_urls
    finally:
        await runner.stop()
