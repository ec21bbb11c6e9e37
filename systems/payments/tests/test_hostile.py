"""schemathesis against each service's own OpenAPI, straight at the service with a real tenant's token
(and the platform admin role for tenant-registration): generated valid and invalid requests never get a 5xx."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.openapi import from_dict  # noqa: E402

SERVICES = ("tenant-registration", "account", "payment", "fraud", "transaction", "audit", "notification")
EXAMPLES = 12  # per operation and generation mode: enough for the cheap bugs, within the suite's time budget
#: A valid POST /tenants onboards a real tenant (a CREATE DATABASE each): fewer of those.
EXAMPLES_ONBOARDING = 4
_seq = itertools.count()


@pytest.fixture(scope="module")
def fuzz_tenant(payments: Payments) -> str:
    tenant = payments.new_tenant("fuzz")
    payments.account(tenant, 1_000)
    return tenant


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_request_gets_a_5xx(payments: Payments, fuzz_tenant: str, service: str) -> None:
    direct = payments.state["services"][service][0]["url"]
    docs = payments.state["services"][service][0]["platform_url"]  # API docs are on the platform port
    schema = from_dict(httpx.get(f"{docs}/openapi.json", timeout=10).json())
    session = requests.Session()
    failures: list[str] = []
    cases = 0
    roles = ["platform-admin"] if service == "tenant-registration" else []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(payments, fuzz_tenant, op, mode, roles, direct, session, failures)
            with contextlib.suppress(Unsatisfiable):
                cases += run()
    assert failures == [], "\n".join(failures[:5])
    if service != "notification":  # the worker documents no operation of its own
        assert cases > 0


def _runner(payments: Payments, tenant: str, op: Any, mode: GenerationMode, roles: list[str], base_url: str,
            session: requests.Session, failures: list[str]) -> Any:
    """A callable running ``op``'s generated cases in ``mode``; returns how many ran."""
    count = [0]

    @settings(max_examples=EXAMPLES_ONBOARDING if roles else EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        count[0] += 1
        token = payments.idp.mint(f"fuzz-{next(_seq)}", roles, extra={"tenant_id": tenant})
        try:
            case.call_and_validate(base_url=base_url, session=session, checks=[not_a_server_error],
                                   headers={"authorization": f"Bearer {token}"}, timeout=15)
        except BaseException as exc:  # collect rather than shrink: the report names the request
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {str(exc)[:800]}")

    def go() -> int:
        run()
        return count[0]

    return go
