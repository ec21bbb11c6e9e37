"""Secrets Manager secrets, KMS-encrypted, replicated to the other regions when the data is global."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct


def replicas(scope: Construct, regions: list[str], alias: str) -> list[sm.ReplicaRegion]:
    """Replica regions, each encrypted with the same-alias key of that region (named by alias ARN)."""
    stack = Stack.of(scope)
    out = []
    for region in regions:
        key = kms.Key.from_key_arn(scope, f"ReplicaKey-{region}",
                                   f"arn:{stack.partition}:kms:{region}:{stack.account}:{alias}")
        out.append(sm.ReplicaRegion(region=region, encryption_key=key))
    return out


def secret(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    key: kms.IKey,
    description: str,
    template: dict[str, str] | None = None,
    generate_key: str = "password",
    length: int = 40,
    replica_regions: list[sm.ReplicaRegion] | None = None,
) -> sm.Secret:
    """A generated secret: ``template`` plus a random ``generate_key`` (no punctuation, safe in URLs)."""
    return sm.Secret(
        scope,
        construct_id,
        secret_name=name,
        description=description,
        encryption_key=key,
        generate_secret_string=sm.SecretStringGenerator(
            secret_string_template=json.dumps(template or {}, sort_keys=True),
            generate_string_key=generate_key,
            exclude_punctuation=True,
            password_length=length,
        ),
        replica_regions=replica_regions,
        removal_policy=RemovalPolicy.RETAIN,
    )


def value_secret(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    key: kms.IKey,
    description: str,
    fields: dict[str, str],
    replica_regions: list[sm.ReplicaRegion] | None = None,
) -> sm.Secret:
    """A secret whose JSON is built at deploy time (endpoints, and passwords pulled in with
    :func:`dynamic_reference`, which CloudFormation resolves without ever showing them)."""
    return sm.Secret(
        scope,
        construct_id,
        secret_name=name,
        description=description,
        encryption_key=key,
        secret_string_value=SecretValue.unsafe_plain_text(Stack.of(scope).to_json_string(fields)),
        replica_regions=replica_regions,
        removal_policy=RemovalPolicy.RETAIN,
    )


def dynamic_reference(name: str, field: str) -> str:
    """``{{resolve:secretsmanager:...}}`` of one JSON field of the secret named ``name`` in this region."""
    return f"{{{{resolve:secretsmanager:{name}:SecretString:{field}}}}}"


def secret_arn_pattern(scope: Construct, name: str, region: str | None = None) -> str:
    """ARN matching a secret by name in this (or another) region: Secrets Manager appends 6 random chars."""
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:secretsmanager:{region or stack.region}:{stack.account}:secret:{name}-??????"


def grant_read_by_name(role: iam.IRole, scope: Construct, names: list[str], key: kms.IKey) -> None:
    """Let ``role`` read the named secrets (local copies or replicas) and decrypt them."""
    if not names:
        return
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
        resources=[secret_arn_pattern(scope, n) for n in sorted(names)],
    ))
    key.grant_decrypt(role)
