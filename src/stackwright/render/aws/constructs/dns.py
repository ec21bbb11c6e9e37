"""Route 53: the system's hosted zone, health checks of every regional origin, and the routing records.

* ``api.<domain>``: latency-routed to every serving region (primary and secondaries), each record tied
  to its region's health check, so an unhealthy region drops out of DNS answers.
* ``writer.<domain>``: failover routing, PRIMARY to the primary region and SECONDARY to the DR region,
  for the write path.
* ``<region>.<domain>``: the regional origins themselves, written by external-dns from each cluster's
  Ingress (the ALB is created by the AWS Load Balancer Controller, not by CloudFormation).

Health checks use the spec's ``edge.health_check_interval_s`` and ``health_check_failure_threshold``;
record TTLs use ``edge.dns_ttl_s``. DNS queries are logged (us-east-1) and the zone is DNSSEC-signed.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from constructs import Construct

from stackwright.spec.model import Edge

from .logs import log_group


class Dns(Construct):
    """Hosted zone ``zone_name`` (the edge's public host) with health-checked latency and failover records.

    ``regions`` maps region name to its role (``primary``/``secondary``/``standby``);
    ``origins`` maps region name to the origin host name health-checked and pointed to;
    ``route_hosts``: the further names spec routes are limited to, latency-routed like ``api_host``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        edge: Edge,
        zone_name: str,
        regions: dict[str, str],
        origins: dict[str, str],
        api_host: str,
        writer_host: str,
        health_path: str,
        route_hosts: list[str] | None = None,
        logs_key: kms.IKey,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        domain = zone_name
        query_logs = log_group(self, "QueryLogs", name=f"/aws/route53/{domain}", days=log_retention_days,
                               key=logs_key)
        policy = logs.CfnResourcePolicy(self, "QueryLogsPolicy", policy_name=f"route53-query-logs-{domain}",
                                        policy_document=stack.to_json_string({
                                            "Version": "2012-10-17",
                                            "Statement": [{
                                                "Effect": "Allow",
                                                "Principal": {"Service": "route53.amazonaws.com"},
                                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                                "Resource": query_logs.log_group_arn,
                                                "Condition": {"StringEquals": {"aws:SourceAccount": stack.account}},
                                            }],
                                        }))
        self.zone = route53.PublicHostedZone(
            self, "Zone", zone_name=domain, comment=f"{domain} (stackwright)",
            query_logs_log_group_arn=f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:"
                                     f"{query_logs.log_group_name}",
        )
        self.zone.node.add_dependency(policy)
        self._dnssec()

        ttl = Duration.seconds(edge.dns_ttl_s)
        self.health_checks: dict[str, route53.HealthCheck] = {}
        for region in regions:
            self.health_checks[region] = route53.HealthCheck(
                self,
                f"Health-{region}",
                type=route53.HealthCheckType.HTTPS,
                fqdn=origins[region],
                port=443,
                resource_path=health_path,
                enable_sni=True,
                request_interval=Duration.seconds(edge.health_check_interval_s),
                failure_threshold=edge.health_check_failure_threshold,
                measure_latency=True,
            )

        serving = [r for r, role in regions.items() if role != "standby"]
        # The names spec routes are limited to (backend., platform.) reach the same ALBs as api., routed alike.
        latency_hosts = {"Api": api_host} | {f"Host-{h.split('.')[0]}": h for h in route_hosts or []}
        if len(regions) == 1:
            only = next(iter(regions))
            for cid, host in latency_hosts.items():
                route53.CnameRecord(self, cid, zone=self.zone, record_name=host, domain_name=origins[only], ttl=ttl)
            route53.CnameRecord(self, "Writer", zone=self.zone, record_name=writer_host, domain_name=origins[only],
                                ttl=ttl)
            return
        for region in serving:
            for cid, host in latency_hosts.items():
                route53.CnameRecord(self, f"{cid}-{region}", zone=self.zone, record_name=host,
                                    domain_name=origins[region], region=region,
                                    set_identifier=f"{cid.lower()}-{region}", health_check=self.health_checks[region],
                                    ttl=ttl)
        primary = next(r for r, role in regions.items() if role == "primary")
        standby = [r for r, role in regions.items() if role == "standby"]
        dr = (standby or [r for r in regions if r != primary])[0]
        route53.CnameRecord(self, "Writer-primary", zone=self.zone, record_name=writer_host,
                            domain_name=origins[primary], failover=route53.Failover.PRIMARY,
                            set_identifier=f"writer-{primary}", health_check=self.health_checks[primary], ttl=ttl)
        route53.CnameRecord(self, "Writer-secondary", zone=self.zone, record_name=writer_host,
                            domain_name=origins[dr], failover=route53.Failover.SECONDARY,
                            set_identifier=f"writer-{dr}", health_check=self.health_checks[dr], ttl=ttl)

    def _dnssec(self) -> None:
        """Sign the zone: an ECC P-256 key-signing key in KMS (us-east-1), used by Route 53 DNSSEC."""
        stack = Stack.of(self)
        key = kms.Key(self, "DnssecKey", key_spec=kms.KeySpec.ECC_NIST_P256, key_usage=kms.KeyUsage.SIGN_VERIFY,
                      description="DNSSEC key-signing key", removal_policy=RemovalPolicy.RETAIN)
        principal = iam.ServicePrincipal("dnssec-route53.amazonaws.com")
        condition = {"StringEquals": {"aws:SourceAccount": stack.account}}
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowRoute53DnssecService", principals=[principal], resources=["*"], conditions=condition,
            actions=["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"]))
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowRoute53DnssecGrants", principals=[principal], resources=["*"], actions=["kms:CreateGrant"],
            conditions={"Bool": {"kms:GrantIsForAWSResource": True}}))
        ksk = route53.CfnKeySigningKey(self, "Ksk", hosted_zone_id=self.zone.hosted_zone_id,
                                       key_management_service_arn=key.key_arn, name="ksk1", status="ACTIVE")
        dnssec = route53.CfnDNSSEC(self, "Dnssec", hosted_zone_id=self.zone.hosted_zone_id)
        dnssec.node.add_dependency(ksk)
