"""One IAM role per service, bound to its Kubernetes ServiceAccount with EKS Pod Identity.

The role starts with no permissions; the stack grants each role exactly the resources its service
``uses`` (queues, topics, buckets, secrets, database IAM auth, search).
"""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from .cluster import EksCluster, pod_identity_principal


class ServiceRoles(Construct):
    """``role(service)`` is the IAM role pods of that service assume (via Pod Identity, no IRSA annotation)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: EksCluster,
        namespace: str,
        service_accounts: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.roles: dict[str, iam.Role] = {}
        for service, account in service_accounts.items():
            role = iam.Role(
                self,
                service,
                assumed_by=pod_identity_principal(),
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
