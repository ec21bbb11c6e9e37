"""One IAM role per service, bound to its Kubernetes ServiceAccount.

The role trusts both ways pods get AWS credentials on EKS, so the manifests may use either:

* EKS Pod Identity: an ``AWS::EKS::PodIdentityAssociation`` maps ``<namespace>/<serviceaccount>`` to the
  role (no annotation needed);
* IRSA: the ServiceAccount carries ``eks.amazonaws.com/role-arn`` (the role has a fixed name,
  :func:`stackwright.deploy.names.service_role_name`) and the role trusts the cluster's OIDC
  provider for exactly that ServiceAccount.

The role starts with no permissions; the stack grants each role exactly the resources its service
``uses`` (queues, topics, buckets, secrets, database IAM auth, search).
"""

from __future__ import annotations

from aws_cdk import CfnJson
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from .cluster import EksCluster, pod_identity_principal


class ServiceRoles(Construct):
    """``role(service)`` is the IAM role pods of that service run as."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: EksCluster,
        namespace: str,
        service_accounts: dict[str, str],
        role_names: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        provider = cluster.cluster.open_id_connect_provider
        issuer = provider.open_id_connect_provider_issuer
        self.roles: dict[str, iam.Role] = {}
        for service, account in service_accounts.items():
            # Condition keys name the cluster's issuer, known only at deploy time, hence CfnJson.
            conditions = CfnJson(self, f"{service}-irsa-conditions", value={
                f"{issuer}:aud": "sts.amazonaws.com",
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
            })
            irsa = iam.OpenIdConnectPrincipal(provider).with_conditions({"StringEquals": conditions})
            role = iam.Role(
                self,
                service,
                role_name=role_names[service],
                assumed_by=iam.CompositePrincipal(pod_identity_principal(), irsa),
                description=f"Pods of service {service} ({namespace}/{account})",
            )
            association = eks.CfnPodIdentityAssociation(
                self,
                f"{service}-association",
                cluster_name=cluster.cluster.cluster_name,
                namespace=namespace,
                service_account=account,
                role_arn=role.role_arn,
            )
            association.node.add_dependency(cluster.addons["eks-pod-identity-agent"])
            self.roles[service] = role

    def role(self, service: str) -> iam.Role:
        """The IAM role of a service."""
        return self.roles[service]
