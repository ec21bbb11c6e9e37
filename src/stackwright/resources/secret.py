"""Application secrets: a JSON document of named values (API keys, per-tenant credentials) that
services read at run time. Secrets Manager in AWS (in the primary region, replicated to the others);
a mode-0600 JSON file under ``.stackwright/<system>/secrets/`` locally.

A service that ``uses`` one gets ``<NAME>_URL``: ``secretsmanager://<secret name>?region=<region>&kms=<data
key alias>`` on EKS (its role may read that secret, and create, read and update the ``<secret name>/*``
secrets a service makes at run time with :class:`stackwright.runtime.secretstore.SecretStore`, encrypted with
the data key), ``file:///.../<name>.json`` locally. The URL is not itself a credential, so it is a plain
setting; the values stay in the store.

Other regions. In a multi-region system the URL also names the other regions (``replicas=``): a secret made
at run time is created with a replica in each (Secrets Manager ``AddReplicaRegions``, encrypted there with
that region's same-alias data key; the role may ``ReplicateSecretToRegions`` and use those keys), and a
service in a replica region reads its own region's replica (``read_region=``), so after the primary region
is lost the standby still reads every tenant's credentials. Locally every region of ``up --regions`` shares
the primary's file (:attr:`Secret.local_shared_across_regions`), as the replicas share the values on AWS.
"""

from __future__ import annotations

import json
import os
import re
import secrets as _random
from typing import Any, Literal

from pydantic import Field, field_validator

from ..spec.strict import Strict
from .base import CostContext, LocalContext, ResourceKind

KEY_RE = r"[a-z][a-z0-9_]{0,63}"


class SecretResource(Strict):
    """A per-system secret: ``keys`` are the JSON properties it holds (each generated at creation:
    48 URL-safe random characters; operators overwrite them with real credentials)."""

    kind: Literal["secret"]
    description: str = ""
    keys: list[str] = Field(default_factory=lambda: ["value"], min_length=1,
                            description="JSON properties of the secret, lower_snake_case")

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for key in v:
            if not re.fullmatch(KEY_RE, key):
                raise ValueError(f"secret key {key!r} must be lower_snake_case (at most 64 characters)")
        if len(set(v)) != len(v):
            raise ValueError("secret keys must be unique")
        return v


def secret_name(system: Any, environment: str, name: str) -> str:
    """Secrets Manager name of the secret: ``<system>/<environment>/<name>``."""
    return f"{system.name}/{environment}/{name}"


class Secret(ResourceKind):
    kind = "secret"
    model = SecretResource
    plan_secret = True  # one Secrets Manager secret (or replica) per region
    aws_api = True  # the secretsmanager interface endpoint serves it
    product = "Secrets Manager"
    consumer_verb = "read secret"
    request_verb = "read secret"
    cdk_provision = "stackwright.resources.secret:provision_cdk"
    cdk_grant = "stackwright.resources.secret:grant_cdk"
    local_shared_across_regions = True  # one file for every local region: AWS replicates the secrets

    async def provision_local(self, name: str, res: SecretResource, ctx: LocalContext) -> str:
        path = ctx.state_dir / "secrets" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        values = json.loads(path.read_text()) if path.exists() else {}
        missing = [k for k in res.keys if k not in values]
        if missing:  # keep what is there (an operator may have set real values), add new keys
            values.update({k: _random.token_urlsafe(36) for k in missing})
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(values, f, indent=2, sort_keys=True)
        return str(path.as_uri())

    def eks_url(self, system: Any, environment: str, name: str, res: SecretResource, *, region: str,
                hosted: str) -> str:
        from ..deploy import names as naming
        from ..deploy.placement import other_regions

        url = (f"secretsmanager://{secret_name(system, environment, name)}?region={hosted}"
               f"&kms={naming.key_alias(system, environment, 'data')}")
        replicas = other_regions(system)
        if replicas:
            url += f"&replicas={','.join(replicas)}"
        if region != hosted and region in replicas:
            url += f"&read_region={region}"
        return url

    def cost(self, name: str, res: SecretResource, ctx: CostContext) -> None:
        # The secret itself is counted in the plan's Secrets Manager line (plan_secret); API calls are
        # priced per 10,000 and a service caching the value makes a handful a day: not priced.
        if ctx.is_primary:
            ctx.assumptions.append(f"secret {name}: GetSecretValue calls assumed cached by services (not priced)")

    def shared_node(self, name: str, res: SecretResource) -> tuple[str, str, str] | None:
        return "SM_", f"Secrets Manager {name}<br/>{', '.join(res.keys)}", "box"


def provision_cdk(stack: Any, name: str, res: SecretResource) -> None:
    """The secret in a regional stack (primary only: :meth:`Secret.regional` is False), replicated to
    the other regions and encrypted with the region's data key."""
    from ..render.aws.constructs.secrets import secret

    plan = stack.plan
    template = {k: "" for k in res.keys[1:]}  # the first key is generated; the rest start empty
    secret(stack, f"AppSecret-{name}", name=secret_name(plan.system, plan.environment, name), key=stack.keys.data,
           description=res.description or f"Secret {name}", template=template, generate_key=res.keys[0],
           length=48, replica_regions=stack.replica_regions or None)


def grant_cdk(stack: Any, role: Any, service: str, name: str, res: SecretResource, secrets: list[str]) -> None:
    """Services that use the secret may read it (and decrypt it with the data key), and keep values made at
    run time under it: the ``<secret name>/*`` secrets of :class:`stackwright.runtime.secretstore.SecretStore`
    (e.g. a new tenant's credentials), in the primary region where the secret lives, created with replicas in
    the other regions (encrypted with each region's data key) and read in this region's replica."""
    from aws_cdk import aws_iam as iam

    from ..deploy.placement import other_regions

    plan, here = stack.plan, stack.region_spec.name
    full = secret_name(plan.system, plan.environment, name)
    secrets.append(full)
    replicas = other_regions(plan.system)
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:GetSecretValue",
                 "secretsmanager:DescribeSecret"] + (["secretsmanager:ReplicateSecretToRegions"] if replicas else []),
        resources=[stack.arn("secretsmanager", plan.primary.name, f"secret:{full}/*")]))
    if here != plan.primary.name and here in replicas:
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[stack.arn("secretsmanager", here, f"secret:{full}/*")]))
    # The data key of every region holding a copy: encrypt in the primary and each replica, decrypt here.
    for region in [plan.primary.name, *replicas]:
        if region == here:
            stack.keys.data.grant_encrypt_decrypt(role)
        else:
            stack.remote_key(role, region)


KIND: ResourceKind = Secret()
