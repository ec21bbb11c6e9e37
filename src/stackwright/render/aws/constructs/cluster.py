"""The regional EKS cluster (aws_eks_v2: native AWS::EKS::Cluster), its managed node groups and add-ons."""

from __future__ import annotations

import re

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from stackwright.deploy.names import NODE_POOL_LABEL
from stackwright.spec.model import Cluster as ClusterSpec
from stackwright.spec.model import NodePool

from .keys import RegionalKeys
from .logs import log_group
from .network import Network

#: Managed add-ons installed on every cluster, in install order.
ADDONS = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "aws-ebs-csi-driver")

#: Root volume of every node.
NODE_DISK_GIB = 100

GPU_TAINT = eks.TaintSpec(effect=eks.TaintEffect.NO_SCHEDULE, key="nvidia.com/gpu", value="true")


def is_arm(instance_type: str) -> bool:
    """Graviton instance types carry a ``g`` after the generation digit (m7g, c6gn, r6gd, t4g)."""
    match = re.match(r"^[a-z]+\d+([a-z-]*)\.", instance_type)
    return bool(match and "g" in match.group(1))


def ami_type(pool: NodePool) -> eks.NodegroupAmiType:
    """AL2023 AMI for a node pool: NVIDIA variant for GPU pools, ARM variant for Graviton types."""
    arm = all(is_arm(t) for t in pool.instance_types)
    if any(is_arm(t) for t in pool.instance_types) and not arm:
        raise ValueError(f"node pool {pool.name} mixes ARM and x86 instance types; split it into two pools")
    if pool.gpu:
        return eks.NodegroupAmiType.AL2023_ARM_64_NVIDIA if arm else eks.NodegroupAmiType.AL2023_X86_64_NVIDIA
    return eks.NodegroupAmiType.AL2023_ARM_64_STANDARD if arm else eks.NodegroupAmiType.AL2023_X86_64_STANDARD


def pod_identity_principal() -> iam.IPrincipal:
    """Trust principal for EKS Pod Identity roles (sts:AssumeRole + sts:TagSession)."""
    return iam.SessionTagsPrincipal(iam.ServicePrincipal("pods.eks.amazonaws.com"))


class EksCluster(Construct):
    """EKS control plane with KMS envelope encryption of Secrets, all control-plane logs, API auth mode,
    a private endpoint (public too only for public-only networks, which have no private path in),
    AL2023 managed node groups per ``cluster.node_pools`` (IMDSv2 with hop limit 1, encrypted gp3 root
    volumes, node auto-repair) and the managed add-ons in :data:`ADDONS`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ClusterSpec,
        name: str,
        network: Network,
        keys: RegionalKeys,
        log_retention_days: int,
        pool_sizes: dict[str, tuple[int, int, int]] | None = None,
    ) -> None:
        """``pool_sizes``: (min, desired, max) nodes per node pool in this region
        (:func:`stackwright.deploy.scale.node_pool`; a standby region starts smaller); the spec's otherwise."""
        super().__init__(scope, construct_id)
        self._pool_sizes = pool_sizes or {}
        # EKS writes control-plane logs here; creating it first sets retention and encryption.
        self.log_group = log_group(self, "ControlPlaneLogs", name=f"/aws/eks/{name}/cluster",
                                   days=log_retention_days, key=keys.logs)
        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=name,
            version=eks.KubernetesVersion.of(spec.kubernetes_version),
            vpc=network.vpc,
            vpc_subnets=[network.workload_subnets],
            endpoint_access=eks.EndpointAccess.PUBLIC_AND_PRIVATE if network.public_only
            else eks.EndpointAccess.PRIVATE,
            secrets_encryption_key=keys.eks,
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
            ],
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            bootstrap_cluster_creator_admin_permissions=False,
        )
        self.cluster.node.add_dependency(self.log_group)

        # Administrators assume this role; it is the only cluster-admin access entry.
        self.admin_role = iam.Role(self, "AdminRole", assumed_by=iam.AccountRootPrincipal(),
                                   description=f"Cluster administrators of {name}")
        self.cluster.grant_access("Admin", self.admin_role.role_arn, [
            eks.AccessPolicy.from_access_policy_name("AmazonEKSClusterAdminPolicy",
                                                     access_scope_type=eks.AccessScopeType.CLUSTER),
        ])

        self.nodegroups: dict[str, eks.Nodegroup] = {}
        for pool in spec.node_pools:
            self.nodegroups[pool.name] = self._nodegroup(pool, network)

        self.addons: dict[str, eks.Addon] = {}
        for addon in ADDONS:
            self.addons[addon] = self._addon(addon)

    @property
    def security_group(self) -> ec2.ISecurityGroup:
        """The EKS cluster security group, which managed node groups (and so every pod) carry."""
        return self.cluster.cluster_security_group

    def _nodegroup(self, pool: NodePool, network: Network) -> eks.Nodegroup:
        template = ec2.LaunchTemplate(
            self,
            f"{pool.name}-template",
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            block_devices=[ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(NODE_DISK_GIB, encrypted=True,
                                                 volume_type=ec2.EbsDeviceVolumeType.GP3),
            )],
        )
        labels = {NODE_POOL_LABEL: pool.name, **pool.labels}
        low, desired, high = self._pool_sizes.get(pool.name, (pool.min, pool.desired, pool.max))
        nodegroup = self.cluster.add_nodegroup_capacity(
            pool.name,
            nodegroup_name=pool.name,
            instance_types=[ec2.InstanceType(t) for t in pool.instance_types],
            ami_type=ami_type(pool),
            capacity_type=eks.CapacityType.SPOT if pool.capacity == "spot" else eks.CapacityType.ON_DEMAND,
            min_size=low,
            max_size=high,
            desired_size=desired,
            max_unavailable_percentage=33,
            enable_node_auto_repair=True,
            subnets=network.workload_subnets,
            labels=labels,
            taints=[GPU_TAINT] if pool.gpu else None,
            launch_template_spec=eks.LaunchTemplateSpec(id=template.launch_template_id or "",
                                                        version=template.latest_version_number),
        )
        # The AL2023 EKS AMIs run the SSM agent: with this and the ssm endpoints, Session Manager reaches a
        # node without SSH keys, open ports or a bastion.
        nodegroup.role.add_managed_policy(
            iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore"))
        return nodegroup

    def _addon(self, name: str) -> eks.Addon:
        config = {"enableNetworkPolicy": "true"} if name == "vpc-cni" else None
        addon = eks.Addon(self, name, cluster=self.cluster, addon_name=name, configuration_values=config,
                          preserve_on_delete=False)
        if name in ("coredns", "aws-ebs-csi-driver"):
            # These run as pods, so they need nodes first.
            for nodegroup in self.nodegroups.values():
                addon.node.add_dependency(nodegroup)
        if name == "aws-ebs-csi-driver":
            role = iam.Role(self, "EbsCsiRole", assumed_by=pod_identity_principal(), managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEBSCSIDriverPolicy")])
            cfn = addon.node.default_child
            assert cfn is not None
            cfn.add_property_override("PodIdentityAssociations", [
                {"ServiceAccount": "ebs-csi-controller-sa", "RoleArn": role.role_arn}])
        return addon
