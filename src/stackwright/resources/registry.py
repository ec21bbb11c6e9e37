"""The registry of resource kinds: one line per kind module.

Adding a kind = writing ``stackwright/resources/<kind>.py`` (its model and a
:class:`~.base.ResourceKind` with ``KIND = ...``) and adding its module to :data:`KIND_MODULES`.
The spec's ``Resource`` union (discriminated on ``kind``) is built from this list, so the order
here is the order pydantic tries and reports the kinds in.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from . import bucket, postgres, queue, redis, search, topic
from .base import ResourceKind

KIND_MODULES = (
    postgres,
    redis,
    queue,
    bucket,
    topic,
    search,
)

#: ``kind`` value -> its implementation.
KINDS: dict[str, ResourceKind] = {m.KIND.kind: m.KIND for m in KIND_MODULES}
#: ``kind`` value -> its spec model.
models: dict[str, type] = {k.kind: k.model for k in KINDS.values()}

# A discriminated union of every registered model: what ``System.resources`` validates against.
Resource: Any = Annotated[Union[tuple(models.values())], Field(discriminator="kind")]  # noqa: UP007


def kind_of(res: Any) -> ResourceKind:
    """The implementation of a resource's kind (``res`` is any registered model instance)."""
    return KINDS[res.kind]
