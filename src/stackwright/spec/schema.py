"""The JSON Schema of ``system.yaml``, generated from the same pydantic model that validates it.

Editors with a YAML language server validate and complete a spec against it, e.g. with a first line
``# yaml-language-server: $schema=./system.schema.json`` after ``stackwright schema --out system.schema.json``.
The schema checks shapes (keys, types, enums); the cross-references that need the whole spec — a
``uses`` naming a resource, call cycles, overlapping CIDRs — are checked by ``stackwright`` when it loads it.
"""

from __future__ import annotations

import json
from typing import Any

from .model import System

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The schema as a dict (JSON Schema draft 2020-12)."""
    schema = System.model_json_schema(mode="validation")
    return {"$schema": DIALECT, "title": "stackwright system.yaml", **{k: v for k, v in schema.items()
                                                                        if k != "title"}}


def json_schema_text() -> str:
    """The schema as deterministic, indented JSON text (ends with a newline)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
