"""Handle on the running speech system for its tests (imported by conftest and the test modules)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.helpers import wait_until

from stackwright.local.idp import DevIdP
from stackwright.local.state import read_state
from stackwright.spec import System


class Speech:
    """Handle on the running system for tests."""

    def __init__(self, system: System, state: dict[str, Any], state_root: Path) -> None:
        self.system = system
        self.state = state
        self.state_root = state_root
        self.base = state["gateway"]
        # Routes are limited to hosts (api. for /asr, backend. for /account): locally <label>.localhost.
        hosts = self.hosts = state["hosts"]
        self.ws_url = hosts["api"].replace("http://", "ws://") + "/asr"
        ident = system.edge.identity
        assert ident is not None
        self.idp = DevIdP(state_root / "speech" / "idp-key.pem", issuer=ident.issuer, audience=ident.audience)
        # Connects to the gateway's address, with the Host header of backend. (Python's resolver may not map
        # *.localhost names to the loopback address as browsers do).
        self.client = httpx.Client(base_url=self.base, timeout=20,
                                   headers={"host": hosts["backend"].removeprefix("http://")})

    def host(self, label: str) -> dict[str, str]:
        """The Host header of the gateway's name ``label`` (``api``, ``backend``, ``platform``)."""
        return {"host": self.hosts[label].removeprefix("http://")}

    def token(self, sub: str, ttl_s: int = 3600) -> str:
        return self.idp.mint(sub, [], ttl_s=ttl_s)

    def usage(self, sub: str) -> dict[str, Any]:
        resp = self.client.get("/account/usage", headers={"authorization": f"Bearer {self.token(sub)}"})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def service_url(self, name: str) -> str:
        """Base URL of a service's (first) replica, bypassing the edge."""
        return str(self.state["services"][name][0]["url"])

    def pid(self, name: str) -> int:
        """The current pid of a service's first replica (it changes when the supervisor restarts it)."""
        state = read_state("speech", self.state_root)
        assert state is not None
        return int(state["services"][name][0]["pid"])

    def db_rows(self, sql: str, *args: Any) -> list[Any]:
        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.state["resources"]["db"])
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    @staticmethod
    def wait_until(check: Any, timeout_s: float = 60.0) -> Any:
        """Poll ``check()`` until it returns something truthy (returned) or time runs out."""
        return wait_until(check, timeout_s, interval_s=0.3)
