"""`stackwright rollout` on the running payments system: the payment service's canary, judged on the seed's
gates (error rate > 1%, p99 > 500 ms, success-rate drop > 2%), is rolled back when it is 600 ms slower."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.rehearsal import Client, rehearse, rendered_queries, server_errors

from stackwright.render.k8s.rollout import template_metrics

from .conftest import Payments

PAYMENT = Path(__file__).resolve().parents[1] / "services" / "payment"


def test_a_slower_payment_version_is_rolled_back_on_the_p99_gate(payments: Payments) -> None:
    limits = {m["name"]: m["failureCondition"] for m in template_metrics(payments.system, "payment")}
    assert limits == {"error-rate": "len(result) > 0 && !isNaN(result[0]) && result[0] > 0.01",
                      "latency-p99": "len(result) > 0 && !isNaN(result[0]) && result[0] > 0.5",
                      "success-rate-drop": "len(result) > 0 && !isNaN(result[0]) && result[0] > 0.02"}
    tenant = payments.new_tenant("canary")
    src = payments.account(tenant, balance=10**9)
    dst = payments.account(tenant)
    headers = payments.token(tenant)
    first = payments.pay(tenant, src, dst, 1)
    assert first.status_code == 201, first.text

    async def pay(client: Client, i: int) -> tuple[int, Any]:
        """One payment in ten, else a read of a payment (cheap, so enough requests reach the canary)."""
        if i % 10:
            return await client.send("GET", f"/payments/{first.json()['id']}", None, headers), None
        body = {"from_account": src, "to_account": dst, "amount": 1, "currency": "USD"}
        return await client.send("POST", "/payments", body, {**headers, "Idempotency-Key": uuid.uuid4().hex}), None

    # Payments are slower than votes: a longer interval lets 50 canary requests (min_requests) arrive by the third
    # measurement, and a 2 s scrape (its timeout) still reads a busy replica's metrics.
    result, outcomes, lines = rehearse(payments.system, "payment", PAYMENT, payments.state_root, 30.0, pay,
                                       payments.state["gateway"], inject="latency-ms=600", interval_s=8.0,
                                       pause_s=5.0, scrape_interval="2s")
    assert result.outcome == "aborted", "\n".join(lines)
    assert result.reason.startswith("analysis failed: latency-p99 failed 2 times"), result.reason
    slow = [r for m in result.measurements for r in m["results"] if r["metric"] == "latency-p99" and r["value"]]
    assert all(r["value"] > 0.5 for r in slow) and len(slow) >= 2
    assert result.template_queries == rendered_queries(payments.system, "payment")
    # Slower, not broken: no client saw an error.
    assert server_errors(outcomes) == 0, Counter(o.status or o.error for o in outcomes)
    assert sum(1 for o in outcomes if o.status == 201) > 0 and sum(1 for o in outcomes if o.status == 200) > 0
