"""Which environments count as production, and which one is meant when none is named.

One rule for every consumer (``stackwright render``, the CDK ``app.py``, ``stackwright plan``, the kustomize
base): before this module the CDK app and plan took ``prod`` else the *last* environment, while the kustomize
base took the first production-named one, so ``[production, staging]`` gave ``staging`` to one and
``production`` to the other.
"""

from __future__ import annotations

from ..spec import System

#: Environment names treated as production: full replica counts and the bare domain as public host.
PRODUCTION_ENVIRONMENTS: frozenset[str] = frozenset({"prod", "production"})


def is_production(environment: str) -> bool:
    """True for the environment names treated as production (see :data:`PRODUCTION_ENVIRONMENTS`)."""
    return environment in PRODUCTION_ENVIRONMENTS


def default_environment(system: System) -> str:
    """The environment rendered or planned when none is asked for.

    The first production environment in spec order (``prod`` or ``production``), else the last one listed
    (specs list environments in promotion order, ``[dev, staging]``, so the last is the most production-like).
    """
    envs = system.environments
    return next((e for e in envs if is_production(e)), envs[-1])
