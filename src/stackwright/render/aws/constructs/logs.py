"""CloudWatch log groups with the spec's retention and the regional logs key."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

# The retention values CloudWatch Logs accepts, in days, in the order of ``logs.RetentionDays``.
_ALLOWED = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
            3653)


def retention_days(days: int) -> int:
    """The smallest retention CloudWatch Logs accepts that keeps logs at least ``days`` days."""
    return next((d for d in _ALLOWED if d >= days), _ALLOWED[-1])


def retention(days: int) -> logs.RetentionDays:
    """:func:`retention_days` as the CDK enum."""
    members = [r for r in logs.RetentionDays if r.value != "INFINITE"]
    return members[_ALLOWED.index(retention_days(days))]


def log_group(scope: Construct, construct_id: str, *, name: str | None, days: int, key: kms.IKey) -> logs.LogGroup:
    """A KMS-encrypted log group kept ``days`` days (rounded up) and retained when the stack goes."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=retention(days),
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN,
    )
