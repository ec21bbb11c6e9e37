"""Topic subscriptions (``resources.<topic>.subscribers``): validation with file:line, each subscriber's
consumer group in its environment locally and on EKS, and the subscriber queues in the plan's cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.spec import SpecError, load_system
from stackwright.spec.wiring import Placement, service_env
from tests.fixtures.load import edited, fixture, line_of


def test_fixture_loads_with_its_subscribers() -> None:
    assert fixture("fanout").resources["payment-events"].subscribers == ["ledger", "notifier"]


def test_a_subscriber_must_be_a_service(tmp_path: Path) -> None:
    path = edited("fanout", tmp_path,
                  lambda s: s["resources"]["payment-events"].update(subscribers=["ledger", "ledgr"]))
    with pytest.raises(SpecError) as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, '- ledgr')}" in str(info.value)
    assert "not a declared service" in str(info.value) and "ledger" in str(info.value.hint)


def test_a_subscriber_must_use_the_topic(tmp_path: Path) -> None:
    path = edited("fanout", tmp_path, lambda s: s["services"]["notifier"].update(uses=[]))
    with pytest.raises(SpecError, match=r"system\.yaml:\d+.*'notifier' does not use it") as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, '- notifier')}" in str(info.value)


def _local(system, service: str) -> dict[str, str]:
    place = Placement(environment="local", region="us-east-1", region_role="primary", host="127.0.0.1", port=9000,
                      jwks_url=None, shutdown_grace_s=5)
    names = {"payment-events": "fanout-payment-events"}  # the topic kind's local_name
    return service_env(system, service, place, resource_urls={}, queue_names=names, service_urls={})


def test_each_subscriber_gets_its_own_group_locally() -> None:
    system = fixture("fanout")
    ledger, notifier, api = (_local(system, s) for s in ("ledger", "notifier", "api"))
    assert ledger["PAYMENT_EVENTS_GROUP"] == "fanout-payment-events-ledger"
    assert notifier["PAYMENT_EVENTS_GROUP"] == "fanout-payment-events-notifier"
    assert "PAYMENT_EVENTS_GROUP" not in api  # a publisher only
    assert api["PAYMENT_EVENTS_TOPIC"] == ledger["PAYMENT_EVENTS_TOPIC"] == "fanout-payment-events"


def test_on_eks_the_group_is_the_subscriber_queue() -> None:
    system = fixture("fanout")
    objs = build_manifests(system, "us-east-1", "prod")
    config = {o["metadata"]["name"]: o["data"] for o in objs if o["kind"] == "ConfigMap"}
    assert config["ledger-config"]["PAYMENT_EVENTS_GROUP"] == "fanout-prod-payment-events-ledger"
    assert config["ledger-config"]["PAYMENT_EVENTS_TOPIC"] == "fanout-prod-payment-events"
    assert config["ledger-config"]["PAYMENT_EVENTS_URL"].endswith(":fanout-prod-payment-events")
    assert "PAYMENT_EVENTS_GROUP" not in config["api-config"]


def test_plan_prices_a_queue_per_subscriber() -> None:
    plan = build_plan(fixture("fanout"))
    (line,) = [ln for ln in plan.cost.lines if "subscriptions" in ln.item]
    assert line.item == "SQS payment-events subscriptions: 2 queue(s) + 2 DLQ(s) (ledger, notifier)"
    # 30 M events x 2 subscribers x 3 requests (send, receive, delete) at $0.40 per million
    assert line.quantity == pytest.approx(180) and line.monthly_usd == pytest.approx(72)


def test_schema_documents_subscribers() -> None:
    from stackwright.spec.schema import json_schema

    props = json_schema()["$defs"]["TopicResource"]["properties"]
    assert "own consumer group" in props["subscribers"]["description"]


@pytest.mark.integration
def test_up_creates_each_subscribers_group_so_no_event_is_missed(redis_server, tmp_path: Path) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from stackwright.resources import kind_of

    system = fixture("fanout")
    res = system.resources["payment-events"]

    class Ctx:
        state_dir = tmp_path
        backing = {"redis": {"url": redis_server.url}}

        def __init__(self) -> None:
            self.system = system

        def report(self, line: str) -> None:
            pass

    async def scenario() -> None:
        stream = "fanout-payment-events"
        client = aioredis.from_url(redis_server.url, decode_responses=True)
        try:
            await client.delete(stream)
            await kind_of(res).provision_local("payment-events", res, Ctx())
            await client.xadd(stream, {"event": "paid"})  # published before any subscriber reads
            for service in ("ledger", "notifier"):  # each group gets it: fan-out
                got = await client.xreadgroup(f"{stream}-{service}", "replica-1", {stream: ">"}, count=10)
                assert [fields for _, entries in got for _, fields in entries] == [{"event": "paid"}]
            await kind_of(res).provision_local("payment-events", res, Ctx())  # again: positions kept
            assert await client.xreadgroup(f"{stream}-ledger", "replica-1", {stream: ">"}) == []
        finally:
            await client.delete(stream)
            await client.aclose()

    asyncio.run(scenario())
