"""AWS Backup: a KMS-encrypted vault in every region, and in the primary region a plan with
continuous backup (point-in-time restore) plus daily snapshots copied to the DR region's vault."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

#: Continuous backups (PITR) can be kept at most 35 days.
MAX_CONTINUOUS_DAYS = 35
DAILY_RETENTION_DAYS = 35


class BackupVault(Construct):
    """The regional vault (same name everywhere so the primary's plan can copy into it)."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.name = name
        self.vault = backup.BackupVault(self, "Vault", backup_vault_name=name, encryption_key=key,
                                        removal_policy=RemovalPolicy.RETAIN)


class BackupPlan(Construct):
    """Continuous backup kept ``retention_days`` (capped at 35) and daily snapshots copied to ``copy_to``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vault: BackupVault,
        retention_days: int,
        resources: list[backup.BackupResource],
        copy_to: str | None,
    ) -> None:
        """``copy_to`` is the region whose same-named vault receives a copy of each daily snapshot."""
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        copy_actions = None
        if copy_to:
            destination = backup.BackupVault.from_backup_vault_arn(
                self, "DrVault",
                f"arn:{stack.partition}:backup:{copy_to}:{stack.account}:backup-vault:{vault.name}")
            copy_actions = [backup.BackupPlanCopyActionProps(destination_backup_vault=destination,
                                                             delete_after=Duration.days(DAILY_RETENTION_DAYS))]
        self.plan = backup.BackupPlan(self, "Plan", backup_vault=vault.vault, backup_plan_rules=[
            backup.BackupPlanRule(
                rule_name="continuous",
                enable_continuous_backup=True,
                delete_after=Duration.days(min(retention_days, MAX_CONTINUOUS_DAYS)),
                schedule_expression=events.Schedule.cron(minute="0", hour="5"),
            ),
            backup.BackupPlanRule(
                rule_name="daily-snapshot",
                delete_after=Duration.days(DAILY_RETENTION_DAYS),
                schedule_expression=events.Schedule.cron(minute="0", hour="6"),
                copy_actions=copy_actions,
            ),
        ])
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("backup.amazonaws.com"), managed_policies=[
            iam.ManagedPolicy.from_aws_managed_policy_name(f"service-role/{name}") for name in (
                "AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores")
        ] + [iam.ManagedPolicy.from_aws_managed_policy_name(name) for name in (
            "AWSBackupServiceRolePolicyForS3Backup", "AWSBackupServiceRolePolicyForS3Restore")])
        if resources:
            self.plan.add_selection("Selection", resources=resources, role=role, allow_restores=False)
