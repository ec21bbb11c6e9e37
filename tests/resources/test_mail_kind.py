"""The ``mail`` kind: spec, wiring, the local SMTP server ``stackwright up`` starts (real aiosmtpd, real
SMTP from the runtime's Mailer, messages read back from its Maildir), SES through moto, plan cost and the
Kubernetes egress it needs."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from stackwright.local.mailbox import read_mailbox
from stackwright.local.ports import free_port
from stackwright.local.runner import LocalSystem, UpOptions
from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.runtime.mail import Mailer, MailError
from stackwright.spec import SpecError, load_system

ROOT = Path(__file__).resolve().parents[2]


def _system(tmp_path: Path, mail: dict | None) -> Path:
    """fastapi-app whose api uses a ``mail`` resource (or not)."""
    dest = tmp_path / "fastapi-app"
    shutil.copytree(ROOT / "systems" / "fastapi-app", dest, ignore=shutil.ignore_patterns(".stackwright"))
    spec = yaml.safe_load((dest / "system.yaml").read_text())
    if mail is not None:
        spec["resources"]["mail"] = {"kind": "mail", **mail}
        spec["services"]["api"]["uses"].append("mail")
    (dest / "system.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest / "system.yaml"


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
        options = UpOptions(port=free_port(), state_root=state_root, echo_logs=False, dashboard=False)
        runner = LocalSystem(system, options, report=lambda line: None)
        try:
            await runner._start_backing()
            await runner._prepare_databases()
            url = runner.endpoints.resource_urls["mail"]
            assert url.startswith("smtp://127.0.0.1:")
            mailer = Mailer(url, system.resources["mail"].sender)
            first = await mailer.send("ana@example.org", "Payment received", "EUR 12.50 from Bo — thank you")
            await mailer.send(["bo@example.org", "cy@example.org"], "Second", "two recipients")
        finally:
            await runner.stop()
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
    policy = next(m for m in manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].endswith("api"))
    egress_443 = [r for r in policy["spec"]["egress"] if {"port": 443, "protocol": "TCP"} in r["ports"]]
    assert any(to.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for r in egress_443 for to in r["to"])
    plan = build_plan(system)
    lines = [line for line in plan.cost.lines if "SES mail" in line.item]
    assert len(lines) == 1 and float(lines[0].monthly_usd) == pytest.approx(500 * 0.10, rel=0.01)
