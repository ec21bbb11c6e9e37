"""How long a stopping pod keeps serving, drains, and is given in total, from the spec.

Behind an ALB (AWS Load Balancer Controller, IP targets) a terminating pod is deregistered from its
target group while kubelet runs its preStop hook. The ALB keeps sending new requests until the
deregistration has propagated, then lets requests in flight finish for the target group's
``deregistration_delay.timeout_seconds``. The pod therefore sleeps in preStop for at least the
deregistration delay plus :data:`PROPAGATION_S`, so SIGTERM arrives only once the ALB has stopped
using it; the process then drains for ``drain_s`` (uvicorn's graceful shutdown, the
``SHUTDOWN_GRACE_SECONDS`` setting), and Kubernetes' ``terminationGracePeriodSeconds`` is the sum plus
:data:`MARGIN_S` for the app's own shutdown hooks.

Pods no load balancer targets (workers, internal services) sleep only :data:`PROPAGATION_S` by
default, for kube-proxy to drop them from their ClusterIP Service.

Each value is read from the service's ``shutdown``, else the system's ``shutdown``, else the default
here; a service's ``graceful_shutdown_s``, when written, is its drain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import System

#: Target-group deregistration delay rendered when the spec sets none (s). AWS's own default is 300 s
#: (Elastic Load Balancing User Guide, "Target groups for your Application Load Balancers",
#: Deregistration delay); 30 s is enough for this runtime's requests and keeps rollouts short.
DEREGISTRATION_DELAY_S = 30
#: Time for the controller to call DeregisterTargets and for the ALB to stop routing to the target (s).
#: AWS documents no bound; the AWS Load Balancer Controller's pod-graceful-shutdown guidance and the
#: EKS Best Practices Guide ("Load Balancing": graceful shutdown) use a preStop sleep for it, and
#: 10-15 s is what is observed in practice, so 15 s is taken.
PROPAGATION_S = 15
#: Default drain after SIGTERM (s): requests in flight and open keep-alive connections finish.
DRAIN_S = 30
#: Extra grace for the app's shutdown hooks (closing pools, stopping consumers) after the drain (s).
MARGIN_S = 5


@dataclass(frozen=True)
class Termination:
    """Resolved stop timings of one service, all in whole seconds."""

    prestop_sleep_s: int
    drain_s: int
    deregistration_delay_s: int

    @property
    def grace_s(self) -> int:
        """``terminationGracePeriodSeconds``: preStop sleep + drain + :data:`MARGIN_S`."""
        return self.prestop_sleep_s + self.drain_s + MARGIN_S


def termination(system: System, service: str) -> Termination:
    """The stop timings of ``service`` (service ``shutdown`` > system ``shutdown`` > defaults)."""
    svc = system.services[service]
    own, common = svc.shutdown, system.shutdown
    delay = _first(own.deregistration_delay_s, common.deregistration_delay_s, DEREGISTRATION_DELAY_S)
    written_drain = svc.graceful_shutdown_s if "graceful_shutdown_s" in svc.model_fields_set else None
    drain = _first(own.drain_s, written_drain, common.drain_s, DRAIN_S)
    # Pods only other pods reach (ClusterIP) wait only for kube-proxy to drop them, not for a target group.
    sleep = _first(own.prestop_sleep_s, common.prestop_sleep_s,
                   delay + PROPAGATION_S if behind_load_balancer(system, service) else PROPAGATION_S)
    return Termination(prestop_sleep_s=sleep, drain_s=drain, deregistration_delay_s=delay)


def behind_load_balancer(system: System, service: str) -> bool:
    """Whether an ALB (``expose: ingress`` with routes) or an NLB (``expose: load-balancer``) targets the pods."""
    svc = system.services[service]
    return svc.expose == "load-balancer" or (svc.expose == "ingress" and bool(svc.routes))


def default_deregistration_delay(system: System) -> int:
    """The system-wide target-group deregistration delay (s): ``shutdown.deregistration_delay_s`` or the
    default."""
    return _first(system.shutdown.deregistration_delay_s, DEREGISTRATION_DELAY_S)


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def check_shutdown(system: System, fail: Any) -> None:
    """Refuse a preStop sleep shorter than the deregistration delay + propagation (the pod would stop
    while the ALB may still send it requests). ``fail(message, loc, hint)`` builds the located error."""
    for name in system.services:
        if not behind_load_balancer(system, name):
            continue
        t = termination(system, name)
        needed = t.deregistration_delay_s + PROPAGATION_S
        if t.prestop_sleep_s >= needed:
            continue
        own = system.services[name].shutdown
        if own.prestop_sleep_s is not None:
            loc: tuple[Any, ...] = ("services", name, "shutdown", "prestop_sleep_s")
        elif own.deregistration_delay_s is not None:
            loc = ("services", name, "shutdown", "deregistration_delay_s")
        else:
            loc = ("shutdown", "prestop_sleep_s")
        raise fail(f"service '{name}': shutdown.prestop_sleep_s ({t.prestop_sleep_s}) is shorter than the ALB "
                   f"deregistration delay ({t.deregistration_delay_s}) + {PROPAGATION_S} s for deregistration to "
                   "take effect, so the pod would stop while the load balancer still sends it requests", loc,
                   f"set prestop_sleep_s >= {needed} or lower deregistration_delay_s")
