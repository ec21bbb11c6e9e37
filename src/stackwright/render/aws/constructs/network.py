"""The regional VPC: subnets per AZ, NAT per spec, flow logs and VPC endpoints."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from stackwright.deploy.network import ISOLATED, PRIVATE, PUBLIC, PUBLIC_NODES, SubnetGroup
from stackwright.spec.model import Network as NetworkSpec

from .keys import RegionalKeys
from .logs import log_group

__all__ = ["ISOLATED", "PRIVATE", "PUBLIC", "PUBLIC_NODES", "Network"]

_TYPES: dict[str, ec2.SubnetType] = {"public": ec2.SubnetType.PUBLIC, "private": ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                     "isolated": ec2.SubnetType.PRIVATE_ISOLATED}

INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Ec2": ec2.InterfaceVpcEndpointAwsService.EC2,
    "EksAuth": ec2.InterfaceVpcEndpointAwsService.EKS_AUTH,
}


class Network(Construct):
    """VPC over ``azs`` with public, private (NAT egress) and isolated subnets, or public subnets only.

    * ``nat: per-az`` gives one NAT gateway per AZ, ``single`` one in total, ``none`` (public-only) none.
    * All traffic is recorded by VPC flow logs into a KMS-encrypted log group.
    * The default security group is stripped of its rules.
    * With ``vpc_endpoints`` the S3 gateway endpoint and interface endpoints for ECR, STS, Logs,
      Secrets Manager, SQS, EC2 and EKS Auth keep node and pod traffic to AWS inside the VPC.
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
            for name, service in INTERFACE_ENDPOINTS.items():
                self.vpc.add_interface_endpoint(name, service=service, subnets=self.workload_subnets,
                                                private_dns_enabled=True)

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
