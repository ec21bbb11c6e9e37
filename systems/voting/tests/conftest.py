"""Bring the voting system up once per test session (real Postgres, Redis, every service, the gateway)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import SystemHandle, system_up

from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"


class Voting(SystemHandle):
    """Handle on the running system for tests."""

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
        rows = self.resource_sql("db", "SELECT count(*) FROM votes WHERE poll_id = $1", uuid.UUID(poll_id))
        return int(rows[0][0])


@pytest.fixture(scope="session")
def voting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Voting]:
    root = tmp_path_factory.mktemp("state")
    # A short visibility timeout so a vote held by a killed worker comes back in seconds, not 30 s; Prometheus
    # for the canary rehearsal (test_rollout).
    with system_up(SPEC, root, timeout_s=180, extra_args=["--visibility-timeout", "votes=3", "--monitoring"]) as state:
        yield Voting(load_system(SPEC), state, root, client_timeout_s=10)
