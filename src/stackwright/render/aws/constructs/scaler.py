"""IAM roles KEDA assumes to read queue depth for a queue worker's ScaledObject.

The rendered TriggerAuthentication says ``podIdentity: {provider: aws, roleArn: <scaler role>}``:
the KEDA operator (ServiceAccount ``keda-operator`` in namespace ``keda``) calls
AssumeRoleWithWebIdentity with its own IRSA token for that role, so each scaler role trusts the
cluster's OIDC provider for exactly that ServiceAccount and may only ``sqs:GetQueueAttributes`` on
the one queue it scales on. The operator itself runs as :attr:`ScalerRoles.operator`, a role with no
permissions whose ARN is what KEDA's Helm chart puts on the operator's ServiceAccount
(``podIdentity.aws.irsa.enabled=true``, ``podIdentity.aws.irsa.roleArn``) so the token is mounted.
"""

from __future__ import annotations

from aws_cdk import CfnJson
from aws_cdk import aws_iam as iam
from constructs import Construct

from .cluster import EksCluster

#: Where KEDA's Helm chart installs its operator (namespace, ServiceAccount).
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR_ACCOUNT = "keda-operator"


class ScalerRoles(Construct):
    """``roles[service]`` reads the depth of the queue ``service`` scales on; ``operator`` is KEDA's own role."""

    def __init__(self, scope: Construct, construct_id: str, *, cluster: EksCluster, operator_role_name: str,
                 queues: dict[str, tuple[str, str]]) -> None:
        """``queues`` maps a worker service to (its scaler role name, the ARN of the queue it scales on)."""
        super().__init__(scope, construct_id)
        provider = cluster.cluster.open_id_connect_provider
        issuer = provider.open_id_connect_provider_issuer
        # Condition keys name the cluster's issuer, known only at deploy time, hence CfnJson.
        conditions = CfnJson(self, "keda-operator-conditions", value={
            f"{issuer}:aud": "sts.amazonaws.com",
            f"{issuer}:sub": f"system:serviceaccount:{KEDA_NAMESPACE}:{KEDA_OPERATOR_ACCOUNT}",
        })
        principal = iam.OpenIdConnectPrincipal(provider).with_conditions({"StringEquals": conditions})
        self.operator = iam.Role(self, "operator", role_name=operator_role_name, assumed_by=principal,
                                 description=f"KEDA operator {KEDA_NAMESPACE}/{KEDA_OPERATOR_ACCOUNT}")
        self.roles: dict[str, iam.Role] = {}
        for service, (role_name, queue_arn) in queues.items():
            role = iam.Role(self, service, role_name=role_name, assumed_by=principal,
                            description=f"KEDA reads the queue depth {service} scales on")
            role.add_to_principal_policy(iam.PolicyStatement(actions=["sqs:GetQueueAttributes"],
                                                             resources=[queue_arn]))
            self.roles[service] = role
