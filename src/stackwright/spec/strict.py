"""The base of every spec section, kept apart from :mod:`.model` so resource kind modules
(:mod:`stackwright.resources`) can build on it without importing the whole model."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME_RE = r"^[a-z][a-z0-9-]{0,40}$"
Name = Annotated[str, Field(pattern=NAME_RE)]


class Strict(BaseModel):
    """Base for every spec section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=False)
