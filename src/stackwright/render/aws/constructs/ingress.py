"""What the ALB Ingress of a region needs from AWS: a TLS certificate, an access-log bucket, and SSM
parameters CI reads to fill the manifests' ``${ACM_CERTIFICATE_ARN}`` and ``${WAF_ACL_ARN}``."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from aws_cdk.region_info import RegionInfo
from constructs import Construct

from .buckets import log_bucket


class IngressSupport(Construct):
    """ACM certificate for ``host`` and ``alt_names`` (DNS-validated in the system's zone), the ALB
    access-log bucket (SSE-S3, as ELB log delivery requires) and the SSM parameters."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        host: str,
        alt_names: list[str],
        zone: route53.IHostedZone,
        log_bucket_name: str,
        access_logs: s3.IBucket,
        retention_days: int,
        ssm_prefix: str,
        web_acl_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.certificate = acm.Certificate(
            self, "Certificate", domain_name=host, subject_alternative_names=alt_names,
            validation=acm.CertificateValidation.from_dns(zone))
        self.log_bucket = log_bucket(self, "AlbLogs", name=log_bucket_name, retention_days=retention_days,
                                     access_logs=access_logs, access_logs_prefix="alb-logs/")
        # Regions older than August 2022 deliver ALB logs from a regional ELB account, newer ones
        # from the log-delivery service principal.
        elb_account = RegionInfo.get(stack.region).elbv2_account
        principal: iam.IPrincipal = iam.AccountPrincipal(elb_account) if elb_account else iam.ServicePrincipal(
            "logdelivery.elasticloadbalancing.amazonaws.com")
        self.log_bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="AlbAccessLogDelivery", principals=[principal], actions=["s3:PutObject"],
            resources=[self.log_bucket.arn_for_objects(f"AWSLogs/{stack.account}/*")]))

        ssm.StringParameter(self, "CertificateArn", parameter_name=f"{ssm_prefix}/certificate-arn",
                            string_value=self.certificate.certificate_arn,
                            description="ACM certificate of the ALB Ingress "
                                        "(alb.ingress.kubernetes.io/certificate-arn)")
        if web_acl_arn is not None:
            ssm.StringParameter(self, "WebAclArn", parameter_name=f"{ssm_prefix}/waf-acl-arn",
                                string_value=web_acl_arn,
                                description="WAFv2 WebACL of the ALB Ingress "
                                            "(alb.ingress.kubernetes.io/wafv2-acl-arn)")
