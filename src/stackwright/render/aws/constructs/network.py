"""The regional VPC: subnets per AZ, NAT per spec, flow logs and VPC endpoints."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from stackwright.deploy.network import INTERFACE_ENDPOINTS, ISOLATED, PRIVATE, PUBLIC, PUBLIC_NODES, SubnetGroup
from stackwright.spec.model import Network as NetworkSpec

from .keys import RegionalKeys
from .logs import log_group

__all__ = ["ISOLATED", "PRIVATE", "PUBLIC", "PUBLIC_NODES", "Network"]

_TYPES: dict[str, ec2.SubnetType] = {"public": ec2.SubnetType.PUBLIC, "private": ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                     "isolated": ec2.SubnetType.PRIVATE_ISOLATED}

_ENDPOINT_SERVICES: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "ecr.api": ec2.InterfaceVpcEndpointAwsService.ECR,
    "ecr.dkr": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "eks-auth": ec2.InterfaceVpcEndpointAwsService.EKS_AUTH,
    "logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "secretsmanager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "ec2": ec2.InterfaceVpcEndpointAwsService.EC2,
    "ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "ssmmessages": ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES,
    "ec2messages": ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES,
}
#: Construct ids as they were before the list moved to deploy (a changed id would replace the endpoint).
_ENDPOINT_IDS = {"ecr.api": "EcrApi", "ecr.dkr": "EcrDocker", "sts": "Sts", "eks-auth": "EksAuth", "logs": "Logs",
                 "secretsmanager": "SecretsManager", "sqs": "Sqs", "ec2": "Ec2", "ssm": "Ssm",
                 "ssmmessages": "SsmMessages", "ec2messages": "Ec2Messages"}


class Network(Construct):
    """VPC over ``azs`` with public, private (NAT egress) and isolated subnets, or public subnets only.

    * ``nat: per-az`` gives one NAT gateway per AZ, ``single`` one in total, ``none`` (public-only) none.
    * All traffic is recorded by VPC flow logs into a KMS-encrypted log group.
    * The default security group is stripped of its rules.
    * With ``vpc_endpoints`` the S3 gateway endpoint and the interface endpoints of
      :data:`stackwright.deploy.network.INTERFACE_ENDPOINTS` keep node and pod traffic to AWS inside the VPC.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: NetworkSpec,
        groups: list[SubnetGroup],
        azs: list[str],
        vpc_cidr: str,
        nat_gateways: int,
        keys: RegionalKeys,
        log_retention_days: int,
    ) -> None:
        """``groups``, ``azs`` and ``nat_gateways`` come from :mod:`stackwright.deploy` (the plan shows the
        same subnets; a test compares them with the synthesized template)."""
        super().__init__(scope, construct_id)
        self.spec = spec
        # Only nodes in a public-only network need public IPs; load balancers in public subnets do not.
        subnets = [ec2.SubnetConfiguration(name=g.name, subnet_type=_TYPES[g.tier], cidr_mask=g.mask,
                                           map_public_ip_on_launch=(g.name == PUBLIC_NODES)
                                           if g.tier == "public" else None)
                   for g in groups]
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
            availability_zones=azs,
            subnet_configuration=subnets,
            nat_gateways=nat_gateways,
            restrict_default_security_group=True,
            enable_dns_hostnames=True,
            enable_dns_support=True,
        )

        flow_logs = log_group(self, "FlowLogs", name=None, days=log_retention_days, key=keys.logs)
        flow_role = iam.Role(self, "FlowLogsRole", assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"))
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs, flow_role),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        if spec.vpc_endpoints:
            self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
            for name in INTERFACE_ENDPOINTS:
                self.vpc.add_interface_endpoint(_ENDPOINT_IDS[name], service=_ENDPOINT_SERVICES[name],
                                                subnets=self.workload_subnets, private_dns_enabled=True)

    @property
    def public_only(self) -> bool:
        """True when the spec asks for public subnets only (no NAT, nodes get public IPs)."""
        return self.spec.layout == "public-only"

    @property
    def workload_subnets(self) -> ec2.SubnetSelection:
        """Where nodes, endpoints and the control-plane ENIs go."""
        if self.public_only:
            return ec2.SubnetSelection(subnet_group_name=PUBLIC_NODES)
        return ec2.SubnetSelection(subnet_group_name=PRIVATE)

    @property
    def data_subnets(self) -> ec2.SubnetSelection:
        """Where databases, caches and search live (isolated subnets: no route to the internet)."""
        if self.public_only:
            return ec2.SubnetSelection(subnet_group_name=PUBLIC_NODES)
        return ec2.SubnetSelection(subnet_group_name=ISOLATED)
