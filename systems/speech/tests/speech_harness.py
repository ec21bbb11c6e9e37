"""Handle on the running speech system for its tests (imported by conftest and the test modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import SystemHandle, wait_until

from stackwright.spec import System


class Speech(SystemHandle):
    """Handle on the running system for tests."""

    def __init__(self, system: System, state: dict[str, Any], state_root: Path) -> None:
        # Routes are limited to hosts (api. for /asr, backend. for /account): locally <label>.localhost. The
        # client connects to the gateway's address with the Host header of backend. (Python's resolver may not
        # map *.localhost names to the loopback address as browsers do).
        hosts = state["hosts"]
        super().__init__(system, state, state_root, client_timeout_s=20,
                         headers={"host": hosts["backend"].removeprefix("http://")})
        self.hosts = hosts
        self.ws_url = hosts["api"].replace("http://", "ws://") + "/asr"

    def host(self, label: str) -> dict[str, str]:
        """The Host header of the gateway's name ``label`` (``api``, ``backend``, ``platform``)."""
        return {"host": self.hosts[label].removeprefix("http://")}

    def token(self, sub: str, ttl_s: int = 3600) -> str:
        return self.idp.mint(sub, [], ttl_s=ttl_s)

    def usage(self, sub: str) -> dict[str, Any]:
        resp = self.client.get("/account/usage", headers={"authorization": f"Bearer {self.token(sub)}"})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def db_rows(self, sql: str, *args: Any) -> list[Any]:
        return self.resource_sql("db", sql, *args)

    @staticmethod
    def wait_until(check: Any, timeout_s: float = 60.0) -> Any:
        """Poll ``check()`` until it returns something truthy (returned) or time runs out."""
        return wait_until(check, timeout_s, interval_s=0.3)
