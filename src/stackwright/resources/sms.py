"""Outbound SMS: a local SNS endpoint (moto's server, every message kept), Amazon SNS in AWS.

* Spec: ``resources: {sms: {kind: sms, sender_id: Files}}``; ``sender_id`` (optional, 1-11 letters and
  digits) is the alphanumeric sender shown where the destination country supports one (not in the US),
  ``sms_type`` is ``Transactional`` (default: delivery over price, for one-time codes and notices) or
  ``Promotional``.
* Wiring: a service that ``uses`` it gets ``<NAME>_URL`` — ``http://127.0.0.1:<port>`` locally (the SNS
  API endpoint), ``sns://<region>`` on EKS — plus ``<NAME>_SMS_TYPE`` and, when set, ``<NAME>_SENDER_ID``.
  Services send through :class:`stackwright.runtime.sms.SmsSender` (SNS ``Publish`` with ``PhoneNumber``).
* Local: ``stackwright up`` starts :mod:`stackwright.local.backing.sns` (moto's SNS API) as the supervised
  process ``sns`` on a free port of 127.0.0.1; every SMS it accepts is written as one JSON file to
  ``.stackwright/<system>/sms/``, read by :func:`stackwright.local.smsbox.read_sms`. Nothing leaves the
  machine.
* AWS: SNS publishes SMS per region, so each region's pods send through their own region. A direct
  publish to a phone number has no resource ARN, so a using service's role gets ``sns:Publish`` on every
  resource *except* SNS topics and endpoints (``NotResource: arn:aws:sns:*``): it can text a number but not
  publish to any topic. New accounts are in the SMS sandbox (only verified destination numbers) with a
  USD 1 monthly spend limit; leaving the sandbox, raising the limit (``MonthlySpendLimit``) and, for US
  numbers, registering an origination number (toll-free or 10DLC) are operator steps with AWS support, not
  deployment ones.
* Plan: ``monthly_messages_thousands`` priced per message at the US rate (see the ``sns`` group of the
  price table).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind


class SmsResource(Strict):
    """Outbound SMS (SNS in AWS, a local SNS endpoint that keeps every message)."""

    kind: Literal["sms"]
    description: str = ""
    # SNS's rule for AWS.SNS.SMS.SenderID: 1-11 characters, letters and digits, at least one letter.
    sender_id: str | None = Field(None, pattern=r"^[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*$", max_length=11,
                                  description="alphanumeric sender id (where the country supports one)")
    sms_type: Literal["Transactional", "Promotional"] = "Transactional"
    monthly_messages_thousands: float = Field(0, ge=0, description="SMS sent per month, in thousands (cost)")


class Sms(ResourceKind):
    kind = "sms"
    model = SmsResource
    local_backing = frozenset({"sns"})
    # The network renders no SNS interface endpoint: the API is reached out on 443, like SES.
    aws_api = False
    product = "SNS"
    consumer_verb = "send SMS"
    request_verb = "send SMS"
    cdk_grant = "stackwright.resources.sms:grant_cdk"

    async def provision_local(self, name: str, res: SmsResource, ctx: LocalContext) -> str:
        return str(ctx.backing["sns"]["url"])

    def env(self, name: str, res: SmsResource, *, real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        env = {resource_env(name, "SMS_TYPE"): res.sms_type}
        if res.sender_id:
            env[resource_env(name, "SENDER_ID")] = res.sender_id
        return env

    def regional(self, res: SmsResource) -> bool:
        return True

    def eks_url(self, system: Any, environment: str, name: str, res: SmsResource, *, region: str,
                hosted: str) -> str:
        return f"sns://{hosted}"

    def cost(self, name: str, res: SmsResource, ctx: CostContext) -> None:
        note = "US destinations' rate" if res.monthly_messages_thousands else (
            f"resources.{name}.monthly_messages_thousands not set: no SMS priced")
        ctx.out.add("messaging", f"SNS {name} SMS", "sns.sms_us_message",
                    res.monthly_messages_thousands * 1000 * ctx.share, "SMS", assumption=note)
        limit = (f"SNS SMS ({name}): an account starts in the SMS sandbox (verified numbers only) with a USD 1 "
                 "monthly spend limit; leaving the sandbox and raising MonthlySpendLimit above the SMS cost priced "
                 "here are requests to AWS support, per region")
        if limit not in ctx.assumptions:
            ctx.assumptions.append(limit)


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: SmsResource, secrets: list[str]) -> None:
    """The service may publish SMS to phone numbers, and nothing to SNS topics or endpoints."""
    from aws_cdk import aws_iam as iam

    # A direct publish to a phone number names no ARN, so it cannot be allowed by resource; excluding
    # every SNS ARN leaves exactly the phone-number publishes.
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["sns:Publish"], not_resources=[f"arn:{stack.partition}:sns:*:*:*"]))


KIND: ResourceKind = Sms()
