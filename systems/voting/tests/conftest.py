"""Bring the voting system up once per test session (real Postgres, Redis, every service, the gateway)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.helpers import wait_until

from stackwright.local.control import start_detached, stop
from stackwright.local.idp import DevIdP
from stackwright.local.ports import free_port
from stackwright.spec import System, load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"


class Voting:
    """Handle on the running system for tests."""

    def __init__(self, system: System, state: dict[str, Any], state_root: Path) -> None:
        self.system = system
        self.state = state
        self.state_root = state_root
        self.base = state["gateway"]
        ident = system.edge.identity
        assert ident is not None
        self.idp = DevIdP(state_root / "voting" / "idp-key.pem", issuer=ident.issuer, audience=ident.audience)
        self.client = httpx.Client(base_url=self.base, timeout=10)

    def token(self, sub: str, *roles: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.idp.mint(sub, list(roles))}"}

    def new_poll(self, options: list[str] | None = None, *, open_it: bool = True) -> dict[str, Any]:
        admin = self.token("admin-1", "admin")
        resp = self.client.post("/polls", json={"title": "Test poll", "options": options or ["A", "B", "C"]},
                                headers=admin)
        assert resp.status_code == 201, resp.text
        poll = resp.json()
        if open_it:
            assert self.client.post(f"/polls/{poll['id']}/open", headers=admin).status_code == 200
        return poll

    def results(self, poll_id: str) -> dict[str, Any]:
        """GET /polls/{id}/results through the gateway (asserts 200)."""
        resp = self.client.get(f"/polls/{poll_id}/results")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def db_count(self, poll_id: str) -> int:
        """Votes of the poll stored in Postgres (the record)."""
        async def count() -> int:
            conn = await asyncpg.connect(self.state["resources"]["db"])
            try:
                return int(await conn.fetchval("SELECT count(*) FROM votes WHERE poll_id = $1", uuid.UUID(poll_id)))
            finally:
                await conn.close()

        return asyncio.run(count())

    wait_until = staticmethod(wait_until)


@pytest.fixture(scope="session")
def voting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Voting]:
    root = tmp_path_factory.mktemp("state")
    # A short visibility timeout so a vote held by a killed worker comes back in seconds, not 30 s; Prometheus
    # for the canary rehearsal (test_rollout).
    state = start_detached(SPEC, port=free_port(), state_root=root, timeout_s=180,
                           extra_args=["--visibility-timeout", "votes=3", "--monitoring"])
    try:
        yield Voting(load_system(SPEC), state, root)
    finally:
        stop("voting", root)
