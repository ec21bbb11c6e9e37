"""The registry of resource kinds: one line per kind module.

Adding a kind = writing ``stackwright/resources/<kind>.py`` (its model and a
:class:`~.base.ResourceKind` instance named ``KIND``) and adding its module name to :data:`KIND_NAMES`.
The spec's ``Resource`` union (discriminated on ``kind``) is built from this list, so the order
here is the order pydantic tries and reports the kinds in.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, Union

from pydantic import Field

from .base import ResourceKind

#: The registered kind modules, by module name under :mod:`stackwright.resources`.
KIND_NAMES = ("postgres", "redis", "queue", "bucket", "topic", "search", "secret", "mail", "sms")
KIND_MODULES = tuple(importlib.import_module(f"{__package__}.{name}") for name in KIND_NAMES)

#: ``kind`` value -> its implementation.
KINDS: dict[str, ResourceKind] = {m.KIND.kind: m.KIND for m in KIND_MODULES}
#: ``kind`` value -> its spec model.
models: dict[str, type] = {k.kind: k.model for k in KINDS.values()}

# A discriminated union of every registered model: what ``System.resources`` validates against.
Resource: Any = Annotated[Union[tuple(models.values())], Field(discriminator="kind")]  # noqa: UP007


def kind_of(res: Any) -> ResourceKind:
    """The implementation of a resource's kind (``res`` is any registered model instance)."""
    return KINDS[res.kind]
