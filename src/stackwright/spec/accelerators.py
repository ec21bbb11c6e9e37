"""GPU accelerators a service can ask for, and which EC2 instance families carry them.

A service's ``accelerator: {type, count}`` must run on a node pool with ``gpu: true`` whose every
instance type carries that accelerator with at least ``count`` GPUs per node. Sources: AWS EC2
accelerated computing instances (G4dn: NVIDIA T4; G5: NVIDIA A10G; G6: NVIDIA L4; G6e: NVIDIA L40S;
P4d: NVIDIA A100; P5: NVIDIA H100), aws.amazon.com/ec2/instance-types/#Accelerated_Computing.
"""

from __future__ import annotations

from typing import Any, Literal

#: Accelerator types the spec accepts.
AcceleratorType = Literal["nvidia-t4", "nvidia-a10g", "nvidia-l4", "nvidia-l40s", "nvidia-a100", "nvidia-h100"]

#: EC2 instance family -> the accelerator its instances carry.
FAMILY_ACCELERATOR: dict[str, str] = {
    "g4dn": "nvidia-t4", "g5": "nvidia-a10g", "g6": "nvidia-l4", "g6e": "nvidia-l40s", "p4d": "nvidia-a100",
    "p5": "nvidia-h100",
}


def accelerator_of(instance_type: str) -> str | None:
    """The accelerator an instance type carries (``g5.xlarge`` -> ``nvidia-a10g``), None for none."""
    return FAMILY_ACCELERATOR.get(instance_type.split(".", 1)[0])


def gpus_per_pod(service: Any) -> int:
    """GPUs one pod of a service requests: ``accelerator.count``, else ``resources.gpu``."""
    return service.accelerator.count if service.accelerator is not None else service.resources.gpu


def check_accelerators(system: Any, fail: Any) -> None:
    """Each service's accelerator pairs with its node pool: gpu: true, the right family, enough GPUs."""
    from ..plan.instances import instance_type

    pools = {p.name: p for p in system.cluster.node_pools}
    for name, svc in system.services.items():
        acc = svc.accelerator
        if acc is None:
            continue
        loc = ("services", name, "accelerator")
        if svc.resources.gpu and svc.resources.gpu != acc.count:
            raise fail(f"service '{name}': resources.gpu ({svc.resources.gpu}) disagrees with accelerator.count "
                       f"({acc.count})", loc, "drop resources.gpu; accelerator.count sets the GPU limit")
        pool = pools.get(svc.node_pool or "")
        if pool is None or not pool.gpu:
            gpu_pools = [p.name for p in pools.values() if p.gpu]
            raise fail(f"service '{name}' needs an {acc.type} but does not run on a node pool with gpu: true", loc,
                       f"set node_pool to one of: {', '.join(gpu_pools)}" if gpu_pools
                       else "add a node pool with gpu: true and a matching instance type")
        for itype in pool.instance_types:
            carried = accelerator_of(itype)
            if carried != acc.type:
                families = [f for f, a in FAMILY_ACCELERATOR.items() if a == acc.type]
                raise fail(f"service '{name}' needs an {acc.type} but node pool '{pool.name}' has {itype} "
                           f"({carried or 'no GPU'})", loc, f"use a {'/'.join(families)} instance type")
            if instance_type(itype).gpus < acc.count:
                raise fail(f"service '{name}' needs {acc.count} GPUs per pod but {itype} has "
                           f"{instance_type(itype).gpus}", loc, "use a larger instance type or a lower count")
