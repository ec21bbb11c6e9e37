"""Deterministic YAML: sorted keys, block style, literal blocks for multi-line text, no anchors.

Every rendered YAML file goes through :func:`dump` / :func:`dump_all`, so the same spec always gives
byte-identical output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never emits anchors/aliases and indents lists under their key."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        # Literal blocks cannot carry trailing spaces on a line; strip them so the block style holds.
        data = "\n".join(line.rstrip() for line in data.split("\n"))
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump(data: Any, *, sort_keys: bool = True) -> str:
    """One YAML document as text (keys sorted unless asked otherwise, no document markers)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False, width=4096,
                     allow_unicode=True, explicit_start=False)


def dump_all(documents: Iterable[Any]) -> str:
    """Several YAML documents separated by ``---`` (each one sorted)."""
    return "---\n".join(dump(doc) for doc in documents)


def load_all(text: str) -> list[Any]:
    """Parse a multi-document YAML text back into Python objects (skipping empty documents)."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]
