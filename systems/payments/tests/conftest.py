"""Bring the payments system up once per test session (real Postgres, Redis, every service, the gateway)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import SystemHandle, sql, system_up

from stackwright.spec import System, load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"
#: Onboardings of tenants named slow-* pause this long after each step, so a test can kill -9 mid-way.
PAUSE_S = "1.5"
#: The payment service's fraud call timeout in the tests (see the fixture).
FRAUD_TIMEOUT_S = "5"
#: Audit exports a segment every 5 entries, or once the oldest waiting entry is 1 s old (see test_audit_archive).
AUDIT_KNOBS = {"AUDIT_SEGMENT_ENTRIES": "5", "AUDIT_EXPORT_AFTER_S": "1"}
#: Events a killed consumer had received come back after 5 s, not 30 (see test_audit_batch).
TOPIC_KNOBS = {"TOPIC_VISIBILITY_TIMEOUT_S": "5"}


class Payments(SystemHandle):
    """Handle on the running system for tests."""

    def __init__(self, system: System, state: dict[str, Any], state_root: Path) -> None:
        super().__init__(system, state, state_root)
        self.admin_url = state["resources"]["db"]
        self.platform_url = state["resources"]["platform"]
        self.archive_url = state["resources"]["audit-archive"]

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.idp.mint('ops', ['platform-admin'])}"}

    def token(self, tenant: str, sub: str = "user-1", roles: tuple[str, ...] = ()) -> dict[str, str]:
        return {"authorization": f"Bearer {self.idp.mint(sub, list(roles), extra={'tenant_id': tenant})}"}

    def reviewer(self, tenant: str) -> dict[str, str]:
        """A token of ``tenant`` that may release or decline held payments."""
        return self.token(tenant, "reviewer-1", ("payments-reviewer",))

    def new_tenant(self, prefix: str = "t") -> str:
        resp = self.client.post("/tenants", json={"name": f"{prefix}-{uuid.uuid4().hex[:8]}", "email": "ops@ex.com"},
                                headers=self.admin())
        assert resp.status_code == 201, resp.text
        assert resp.json()["status"] == "active"
        return str(resp.json()["id"])

    def account(self, tenant: str, balance: int = 0, currency: str = "USD", **extra: Any) -> str:
        resp = self.client.post("/accounts", json={"name": "acct", "currency": currency, "opening_balance": balance,
                                                   **extra}, headers=self.token(tenant))
        assert resp.status_code == 201, resp.text
        assert resp.json()["balance"] == balance
        return str(resp.json()["id"])

    def pay(self, tenant: str, src: str, dst: str, amount: int, key: str | None = None,
            currency: str = "USD") -> httpx.Response:
        return self.client.post("/payments", json={"from_account": src, "to_account": dst, "amount": amount,
                                                   "currency": currency},
                                headers={**self.token(tenant), "Idempotency-Key": key or uuid.uuid4().hex})

    def sql(self, url: str, query: str, *args: Any) -> list[Any]:
        return sql(url, query, *args)


@pytest.fixture(scope="session")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payments]:
    root = tmp_path_factory.mktemp("state")
    # Inherited by the runner and so by the services: only tenants named slow-* pause (see tenant-registration);
    # fraud gets 5 s instead of 1 s before a payment is held as fraud_unavailable, so a busy CI machine (a
    # tenant's first request opens its pools) does not turn an approved payment into a held one; audit exports
    # small segments soon; a killed subscriber's events are redelivered after 5 s.
    knobs = {"ONBOARDING_PAUSE_S": PAUSE_S, "FRAUD_TIMEOUT_S": FRAUD_TIMEOUT_S, **AUDIT_KNOBS, **TOPIC_KNOBS}
    # --monitoring: Prometheus for the canary rehearsal (test_rollout).
    with system_up(SPEC, root, env=knobs, extra_args=["--monitoring"]) as state:
        yield Payments(load_system(SPEC), state, root)
