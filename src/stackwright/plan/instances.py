"""EC2 instance types a node group can use: vCPU, memory, pod limit and what a pod can be given (allocatable).

Sources (as of 2025-01-15):

* vCPU and memory: aws.amazon.com/ec2/instance-types (general, compute, memory optimised, accelerated).
* max pods: ``amazon-eks-ami`` ``eni-max-pods.txt`` (VPC CNI without prefix delegation:
  ENIs x (IPv4 addresses per ENI - 1) + 2).
* allocatable: the EKS-optimised AMI's kube-reserved formula (bootstrap): CPU 6% of the first core, 1% of
  the second, 0.5% of cores 3-4, 0.25% of the rest; memory 255 MiB + 11 MiB per pod the node can run;
  plus the kubelet's hard eviction threshold of 100 MiB.

On top of allocatable, every node runs DaemonSets; :data:`DAEMONSET_OVERHEAD` is what plan assumes they
request (aws-node, kube-proxy, ebs-csi-node, a log shipper and node-exporter).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PlanError

SOURCE = ("aws.amazon.com/ec2/instance-types; amazon-eks-ami eni-max-pods.txt and bootstrap kube-reserved "
          "formula; as of 2025-01-15")

#: (CPU millicores, memory MiB, pods) that DaemonSets take on every node (an assumption, stated in the plan).
DAEMONSET_OVERHEAD = (250, 350, 5)

#: name -> (vCPU, memory GiB, max pods, GPUs)
_TABLE: dict[str, tuple[int, float, int, int]] = {
    "t3.micro": (2, 1, 4, 0),
    "t3.small": (2, 2, 11, 0),
    "t3.medium": (2, 4, 17, 0),
    "t3.large": (2, 8, 35, 0),
    "t3.xlarge": (4, 16, 58, 0),
    "t3.2xlarge": (8, 32, 58, 0),
    "t3a.medium": (2, 4, 17, 0),
    "t3a.large": (2, 8, 35, 0),
    "t4g.micro": (2, 1, 4, 0),
    "t4g.small": (2, 2, 11, 0),
    "t4g.medium": (2, 4, 17, 0),
    "t4g.large": (2, 8, 35, 0),
    "t4g.xlarge": (4, 16, 58, 0),
    "t4g.2xlarge": (8, 32, 58, 0),
    "m5.large": (2, 8, 29, 0),
    "m5.xlarge": (4, 16, 58, 0),
    "m5.2xlarge": (8, 32, 58, 0),
    "m5.4xlarge": (16, 64, 234, 0),
    "m6i.large": (2, 8, 29, 0),
    "m6i.xlarge": (4, 16, 58, 0),
    "m6i.2xlarge": (8, 32, 58, 0),
    "m6i.4xlarge": (16, 64, 234, 0),
    "m6i.8xlarge": (32, 128, 234, 0),
    "m7i.large": (2, 8, 29, 0),
    "m7i.xlarge": (4, 16, 58, 0),
    "m7i.2xlarge": (8, 32, 58, 0),
    "m7i.4xlarge": (16, 64, 234, 0),
    "m6g.large": (2, 8, 29, 0),
    "m6g.xlarge": (4, 16, 58, 0),
    "m6g.2xlarge": (8, 32, 58, 0),
    "m6g.4xlarge": (16, 64, 234, 0),
    "m7g.large": (2, 8, 29, 0),
    "m7g.xlarge": (4, 16, 58, 0),
    "m7g.2xlarge": (8, 32, 58, 0),
    "m7g.4xlarge": (16, 64, 234, 0),
    "c6i.large": (2, 4, 29, 0),
    "c6i.xlarge": (4, 8, 58, 0),
    "c6i.2xlarge": (8, 16, 58, 0),
    "c6i.4xlarge": (16, 32, 234, 0),
    "c7i.large": (2, 4, 29, 0),
    "c7i.xlarge": (4, 8, 58, 0),
    "c7i.2xlarge": (8, 16, 58, 0),
    "c7i.4xlarge": (16, 32, 234, 0),
    "c6g.large": (2, 4, 29, 0),
    "c6g.xlarge": (4, 8, 58, 0),
    "c6g.2xlarge": (8, 16, 58, 0),
    "c7g.large": (2, 4, 29, 0),
    "c7g.xlarge": (4, 8, 58, 0),
    "c7g.2xlarge": (8, 16, 58, 0),
    "c7g.4xlarge": (16, 32, 234, 0),
    "r6i.large": (2, 16, 29, 0),
    "r6i.xlarge": (4, 32, 58, 0),
    "r6i.2xlarge": (8, 64, 58, 0),
    "r6i.4xlarge": (16, 128, 234, 0),
    "r7i.large": (2, 16, 29, 0),
    "r7i.xlarge": (4, 32, 58, 0),
    "r7i.2xlarge": (8, 64, 58, 0),
    "r7i.4xlarge": (16, 128, 234, 0),
    "r6g.large": (2, 16, 29, 0),
    "r6g.xlarge": (4, 32, 58, 0),
    "r6g.2xlarge": (8, 64, 58, 0),
    "r7g.large": (2, 16, 29, 0),
    "r7g.xlarge": (4, 32, 58, 0),
    "r7g.2xlarge": (8, 64, 58, 0),
    "r7g.4xlarge": (16, 128, 234, 0),
    "g4dn.xlarge": (4, 16, 29, 1),
    "g4dn.2xlarge": (8, 32, 29, 1),
    "g4dn.4xlarge": (16, 64, 29, 1),
    "g5.xlarge": (4, 16, 58, 1),
    "g5.2xlarge": (8, 32, 58, 1),
    "g5.4xlarge": (16, 64, 234, 1),
    "g6.xlarge": (4, 16, 58, 1),
    "g6.2xlarge": (8, 32, 58, 1),
}


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type as a Kubernetes node."""

    name: str
    vcpu: int
    memory_mib: int
    max_pods: int
    gpus: int

    @property
    def kube_reserved_cpu_m(self) -> int:
        """CPU the EKS AMI reserves for the kubelet and container runtime."""
        cores = self.vcpu
        reserved = 60.0 if cores >= 1 else 0.0
        reserved += 10.0 if cores >= 2 else 0.0
        reserved += 5.0 * max(0, min(cores, 4) - 2)
        reserved += 2.5 * max(0, cores - 4)
        return round(reserved)

    @property
    def kube_reserved_memory_mib(self) -> int:
        """Memory the EKS AMI reserves (255 MiB + 11 MiB per pod) plus the 100 MiB eviction threshold."""
        return 255 + 11 * self.max_pods + 100

    @property
    def allocatable_cpu_m(self) -> int:
        """CPU the scheduler can give to pods."""
        return self.vcpu * 1000 - self.kube_reserved_cpu_m

    @property
    def allocatable_memory_mib(self) -> int:
        """Memory the scheduler can give to pods."""
        return self.memory_mib - self.kube_reserved_memory_mib

    @property
    def usable_cpu_m(self) -> int:
        """Allocatable CPU left for workloads after DaemonSets."""
        return self.allocatable_cpu_m - DAEMONSET_OVERHEAD[0]

    @property
    def usable_memory_mib(self) -> int:
        """Allocatable memory left for workloads after DaemonSets."""
        return self.allocatable_memory_mib - DAEMONSET_OVERHEAD[1]

    @property
    def usable_pods(self) -> int:
        """Pod slots left after DaemonSets."""
        return max(1, self.max_pods - DAEMONSET_OVERHEAD[2])


def instance_type(name: str) -> InstanceType:
    """Look up an instance type, or raise a PlanError naming it."""
    try:
        vcpu, mem_gib, max_pods, gpus = _TABLE[name]
    except KeyError:
        raise PlanError(f"instance type '{name}' is not in plan's instance table "
                        "(add it to stackwright/plan/instances.py with its vCPU, memory and max pods)") from None
    return InstanceType(name=name, vcpu=vcpu, memory_mib=int(mem_gib * 1024), max_pods=max_pods, gpus=gpus)


def known_instance_types() -> list[str]:
    """Names in the table, sorted."""
    return sorted(_TABLE)
