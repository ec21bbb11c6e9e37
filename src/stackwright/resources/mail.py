"""Outbound email: a real SMTP server locally (aiosmtpd, every message kept), Amazon SES in AWS.

* Spec: ``resources: {mail: {kind: mail, sender: no-reply@example.com}}``; ``sender`` is the From
  address every message carries (on AWS the SES identity the services may send as).
* Wiring: a service that ``uses`` it gets ``<NAME>_URL`` — ``smtp://127.0.0.1:<port>`` locally,
  ``ses://<region>`` on EKS — and ``<NAME>_SENDER``. Services send through
  :class:`stackwright.runtime.mail.Mailer`, which speaks SMTP or the SES v2 API by the URL's scheme.
* Local: ``stackwright up`` starts aiosmtpd's Maildir handler as the supervised process ``smtp`` on a
  free port of 127.0.0.1; every message lands in ``.stackwright/<system>/mail/`` (a Maildir), read by
  :func:`stackwright.local.mailbox.read_mailbox`. Nothing leaves the machine.
* AWS: one SES email identity for ``sender`` per region (SES is regional, so each region's pods send
  through their own region); a using service's role may ``ses:SendEmail`` only as that identity
  (``ses:FromAddress`` condition). A new SES account is in the sandbox (it delivers only to verified
  addresses) until AWS grants production access: an operator step, not a deployment one.
* Plan: ``monthly_emails_thousands`` priced at SES's outbound rate.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind

#: Local part and domain of a plain address (no display name: SES identities are bare addresses).
ADDRESS_RE = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+"


class MailResource(Strict):
    """Outbound email (SES in AWS, a local SMTP server that keeps every message)."""

    kind: Literal["mail"]
    description: str = ""
    sender: str = Field(pattern=f"^{ADDRESS_RE}$", description="From address of every message; the SES identity")
    monthly_emails_thousands: float = Field(0, ge=0, description="emails sent per month, in thousands (cost)")


class Mail(ResourceKind):
    kind = "mail"
    model = MailResource
    local_backing = frozenset({"smtp"})
    # The SES API has no interface endpoint in the VPC endpoints the network renders: out on 443.
    aws_api = False
    product = "SES"
    consumer_verb = "send email"
    request_verb = "send email"
    cdk_provision = "stackwright.resources.mail:provision_cdk"
    cdk_grant = "stackwright.resources.mail:grant_cdk"

    async def provision_local(self, name: str, res: MailResource, ctx: LocalContext) -> str:
        return str(ctx.backing["smtp"]["url"])

    def env(self, name: str, res: MailResource, *, real_name: str | None) -> dict[str, str]:
        from ..contract import resource_env

        return {resource_env(name, "SENDER"): res.sender}

    def regional(self, res: MailResource) -> bool:
        return True

    def eks_url(self, system: Any, environment: str, name: str, res: MailResource, *, region: str,
                hosted: str) -> str:
        return f"ses://{hosted}"

    def cost(self, name: str, res: MailResource, ctx: CostContext) -> None:
        note = "" if res.monthly_emails_thousands else (
            f"resources.{name}.monthly_emails_thousands not set: no emails priced")
        ctx.out.add("messaging", f"SES {name} outbound email", "ses.email_thousand",
                    res.monthly_emails_thousands * ctx.share, "thousand emails", assumption=note)


def identity_arn(stack: Any, sender: str) -> str:
    """ARN of the SES identity of ``sender`` in the stack's region."""
    return str(stack.format_arn(service="ses", resource="identity", resource_name=sender))


def provision_cdk(stack: Any, name: str, res: MailResource) -> None:
    """The SES email identity of the sender in this region (SES verifies it by a mail to the address)."""
    from aws_cdk import aws_ses as ses

    ses.EmailIdentity(stack, f"Mail-{name}", identity=ses.Identity.email(res.sender))


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: MailResource, secrets: list[str]) -> None:
    """The service may send as the sender's identity only."""
    from aws_cdk import aws_iam as iam

    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["ses:SendEmail", "ses:SendRawEmail"], resources=[identity_arn(stack, res.sender)],
        conditions={"StringEquals": {"ses:FromAddress": res.sender}}))


KIND: ResourceKind = Mail()
