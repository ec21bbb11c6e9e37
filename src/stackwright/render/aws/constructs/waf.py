"""The regional WAFv2 WebACL the ALB Ingress attaches (``alb.ingress.kubernetes.io/wafv2-acl-arn``)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stackwright.spec.model import Waf as WafSpec

from .logs import log_group

#: AWS managed rule groups added when ``managed_rules`` is on, in evaluation order.
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesSQLiRuleSet",
)


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(cloud_watch_metrics_enabled=True, metric_name=name,
                                                    sampled_requests_enabled=True)


class WebAcl(Construct):
    """REGIONAL WebACL: a per-IP rate-based rule (``rate_limit_per_5min`` over a 5-minute window) that
    blocks, then AWS managed rule groups; requests are logged to CloudWatch Logs."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: WafSpec, name: str, key: kms.IKey,
                 log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        rules = [wafv2.CfnWebACL.RuleProperty(
            name="rate-limit-per-ip",
            priority=0,
            action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=spec.rate_limit_per_5min, aggregate_key_type="IP", evaluation_window_sec=300)),
            visibility_config=_visibility("rate-limit-per-ip"),
        )]
        if spec.managed_rules:
            for i, group in enumerate(MANAGED_RULE_GROUPS, start=1):
                rules.append(wafv2.CfnWebACL.RuleProperty(
                    name=group,
                    priority=i,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=group)),
                    visibility_config=_visibility(group),
                ))
        # Without managed rules (the spec's choice) the ACL gets its own id so the skips file can name it.
        self.acl = wafv2.CfnWebACL(
            self,
            "Acl" if spec.managed_rules else "RateOnlyAcl",
            name=name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(name),
            rules=rules,
        )
        # WAF only logs to log groups whose name starts with aws-waf-logs-.
        logs = log_group(self, "Logs", name=f"aws-waf-logs-{name}", days=log_retention_days, key=key)
        stack = Stack.of(self)
        wafv2.CfnLoggingConfiguration(self, "Logging", resource_arn=self.acl.attr_arn,
                                                log_destination_configs=[
                                                    f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:"
                                                    f"log-group:{logs.log_group_name}"])
