"""The ``mail`` kind: spec, wiring, the local SMTP server ``stackwright up`` starts (real aiosmtpd, real
SMTP from the runtime's Mailer, messages read back from its Maildir), SES through moto, plan cost and the
Kubernetes egress it needs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from stackwright.local.mailbox import read_mailbox
from stackwright.local.ports import free_port
from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.runtime.mail import Mailer, MailError
from stackwright.spec import SpecError, load_system
from tests.helpers import egress_443_anywhere, fastapi_app_using, local_resources


def _system(tmp_path: Path, mail: dict | None) -> Path:
    """fastapi-app whose api uses a ``mail`` resource named ``mail`` (or not)."""
    return fastapi_app_using(tmp_path, "mail", None if mail is None else {"kind": "mail", **mail})


def test_spec_needs_a_plain_sender_address(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path / "ok", {"sender": "no-reply@items.example.com"}))
    assert system.resources["mail"].sender == "no-reply@items.example.com"
    for bad in ("Items <no-reply@items.example.com>", "no-reply", "a@localhost"):
        with pytest.raises(SpecError, match=r"system.yaml:\d+"):
            load_system(_system(tmp_path / f"bad{len(bad)}", {"sender": bad}))


def test_local_run_starts_an_smtp_server_that_keeps_what_services_send(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path, {"sender": "no-reply@items.example.com"}))
    state_root = tmp_path / "state"

    async def scenario() -> None:
        async with local_resources(system, state_root) as urls:
            url = urls["mail"]
            assert url.startswith("smtp://127.0.0.1:")
            mailer = Mailer(url, system.resources["mail"].sender)
            first = await mailer.send("ana@example.org", "Payment received", "EUR 12.50 from Bo — thank you")
            await mailer.send(["bo@example.org", "cy@example.org"], "Second", "two recipients")
        messages = read_mailbox(state_root, system.name)
        assert [m["Subject"] for m in messages] == ["Payment received", "Second"]
        assert messages[0]["Message-ID"] == first
        assert messages[0]["From"] == "no-reply@items.example.com"
        assert messages[0].get_content().strip() == "EUR 12.50 from Bo — thank you"
        assert messages[1]["To"] == "bo@example.org, cy@example.org"

    asyncio.run(scenario())


def test_an_unreachable_server_is_a_mail_error() -> None:
    mailer = Mailer(f"smtp://127.0.0.1:{free_port()}", "no-reply@items.example.com")
    with pytest.raises(MailError, match="failed"):
        asyncio.run(mailer.send("ana@example.org", "s", "b"))


def test_from_env_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_URL", "ses://eu-west-1")
    monkeypatch.delenv("MAIL_SENDER", raising=False)
    with pytest.raises(KeyError, match="MAIL_SENDER"):
        Mailer.from_env("mail")
    with pytest.raises(ValueError, match="smtp://"):
        Mailer("http://127.0.0.1:25", "a@b.example.com")


@mock_aws
def test_ses_transport_sends_as_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ses = boto3.client("sesv2", region_name="eu-west-1")
    ses.create_email_identity(EmailIdentity="no-reply@items.example.com")
    monkeypatch.setenv("MAIL_URL", "ses://eu-west-1")
    monkeypatch.setenv("MAIL_SENDER", "no-reply@items.example.com")
    message_id = asyncio.run(Mailer.from_env("mail").send("ana@example.org", "Hello", "body"))
    assert message_id
    quota = boto3.client("ses", region_name="eu-west-1").get_send_quota()
    assert quota["SentLast24Hours"] == 1
    with pytest.raises(MailError, match="SES"):  # an unverified sender is refused, not swallowed
        asyncio.run(Mailer("ses://eu-west-1", "other@items.example.com").send("ana@example.org", "x", "y"))


def test_wiring_cost_and_egress_on_eks(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path, {"sender": "no-reply@items.example.com",
                                            "monthly_emails_thousands": 500}))
    manifests = build_manifests(system, "ap-southeast-1", "prod")
    config = next(m for m in manifests if m["kind"] == "ConfigMap" and m["data"].get("MAIL_URL"))
    assert config["data"]["MAIL_URL"] == "ses://ap-southeast-1"
    assert config["data"]["MAIL_SENDER"] == "no-reply@items.example.com"
    assert egress_443_anywhere(manifests, "api")
    plan = build_plan(system)
    lines = [line for line in plan.cost.lines if "SES mail" in line.item]
    assert len(lines) == 1 and float(lines[0].monthly_usd) == pytest.approx(500 * 0.10, rel=0.01)
