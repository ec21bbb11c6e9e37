"""The ``sms`` kind: spec, wiring, the local SNS endpoint ``stackwright up`` starts (moto's SNS API under a
recorder, real SNS Publish calls from the runtime's SmsSender, messages read back from its folder), the
IAM grant, plan cost and the Kubernetes egress it needs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stackwright.local.ports import free_port
from stackwright.local.smsbox import read_sms
from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.runtime.sms import SmsError, SmsSender
from stackwright.spec import SpecError, load_system
from tests.helpers import egress_443_anywhere, fastapi_app_using, local_resources

pytest.importorskip("flask", reason="the local SNS endpoint needs moto's server extras (the files extra)")


def _system(tmp_path: Path, sms: dict | None) -> Path:
    """fastapi-app whose api uses a ``sms`` resource named ``texts`` (or not)."""
    return fastapi_app_using(tmp_path, "texts", None if sms is None else {"kind": "sms", **sms})


def test_spec_checks_the_sender_id_and_type(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path / "ok", {"sender_id": "Items"}))
    assert system.resources["texts"].sender_id == "Items"
    assert system.resources["texts"].sms_type == "Transactional"
    for i, bad in enumerate(({"sender_id": "TwelveLetters"}, {"sender_id": "12345"}, {"sender_id": "a b"},
                             {"sms_type": "Urgent"}, {"monthly_messages_thousands": -1})):
        with pytest.raises(SpecError, match=r"system.yaml:\d+"):
            load_system(_system(tmp_path / f"bad{i}", bad))


def test_local_run_starts_an_sns_endpoint_that_records_every_sms(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path, {"sender_id": "Items"}))
    state_root = tmp_path / "state"

    async def scenario() -> None:
        async with local_resources(system, state_root) as urls:
            url = urls["texts"]
            assert url.startswith("http://127.0.0.1:")
            sender = SmsSender(url, sender_id="Items")
            first = await sender.send("+14155550123", "Your code is 314159 — valid 10 minutes")
            second = await SmsSender(url, sms_type="Promotional").send("+447700900123", "Second")
            with pytest.raises(ValueError, match=r"E\.164"):
                await sender.send("0155 550123", "no country code")
            with pytest.raises(ValueError, match="1600"):
                await sender.send("+14155550123", "x" * 1601)
        sent = read_sms(state_root, system.name)
        assert [(s["message_id"], s["phone_number"], s["message"]) for s in sent] == [
            (first, "+14155550123", "Your code is 314159 — valid 10 minutes"), (second, "+447700900123", "Second")]
        assert sent[0]["attributes"] == {"AWS.SNS.SMS.SMSType": "Transactional", "AWS.SNS.SMS.SenderID": "Items"}
        assert sent[1]["attributes"] == {"AWS.SNS.SMS.SMSType": "Promotional"}

    asyncio.run(scenario())


def test_an_unreachable_endpoint_is_an_sms_error() -> None:
    sender = SmsSender(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SmsError, match="failed"):
        asyncio.run(sender.send("+14155550123", "hello"))


def test_from_env_reads_the_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEXTS_URL", raising=False)
    with pytest.raises(KeyError, match="TEXTS_URL"):
        SmsSender.from_env("texts")
    monkeypatch.setenv("TEXTS_URL", "sns://eu-west-1")
    monkeypatch.setenv("TEXTS_SMS_TYPE", "Promotional")
    monkeypatch.setenv("TEXTS_SENDER_ID", "Items")
    sender = SmsSender.from_env("texts")
    assert (sender.url, sender.sms_type, sender.sender_id) == ("sns://eu-west-1", "Promotional", "Items")
    with pytest.raises(ValueError, match="sns://"):
        SmsSender("smtp://127.0.0.1:25")


def test_wiring_cost_and_egress_on_eks(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path, {"sender_id": "Items", "monthly_messages_thousands": 100}))
    manifests = build_manifests(system, "ap-southeast-1", "prod")
    config = next(m for m in manifests if m["kind"] == "ConfigMap" and m["data"].get("TEXTS_URL"))
    assert config["data"]["TEXTS_URL"] == "sns://ap-southeast-1"
    assert config["data"]["TEXTS_SMS_TYPE"] == "Transactional"
    assert config["data"]["TEXTS_SENDER_ID"] == "Items"
    assert egress_443_anywhere(manifests, "api")
    plan = build_plan(system)
    lines = [line for line in plan.cost.lines if "SNS texts SMS" in line.item]
    assert len(lines) == 1 and float(lines[0].monthly_usd) == pytest.approx(100_000 * 0.00883, rel=0.01)
    assert any("MonthlySpendLimit" in a for a in plan.cost.assumptions)
