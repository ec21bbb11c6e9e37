"""Resource kinds as modules: each kind of backing resource (postgres, redis, queue, bucket, topic,
search, ...) lives in one module here with its spec model and every hook stackwright needs
(:class:`.base.ResourceKind`); the rest of the code dispatches through :func:`kind_of`.
"""

# The spec's model imports the registry to build its ``Resource`` union, and the kind modules build on
# the spec's ``Strict``: load the spec first so the cycle always starts from it, whichever is imported first.
from .. import spec as _spec  # noqa: F401
from .base import CostContext, LocalContext, ResourceKind
from .registry import KINDS, kind_of

__all__ = ["KINDS", "CostContext", "LocalContext", "ResourceKind", "kind_of"]
