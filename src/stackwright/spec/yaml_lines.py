"""Load YAML while remembering the line of every key, so errors can point at file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError

Loc = tuple[str | int, ...]

#: Most values (mappings, lists and scalars, aliases expanded) a spec may hold. The largest real spec is a
#: few thousand; the cap stops an alias "billion laughs" (a few lines expanding to 10^9 values) at once.
MAX_VALUES = 200_000
#: Deepest nesting of mappings and lists (a recursive alias would nest without end).
MAX_DEPTH = 64


def load_with_lines(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file into plain Python data plus a map from key path to 1-based line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SpecError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded", path, line,
                        hint="save the file as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path) from None
    if node is None:
        # Empty, or only comments: point at line 1 (a message without a line reads as a missing file).
        raise SpecError("the spec is empty", path, 1, hint="a system.yaml needs at least name, regions, cluster, "
                        "services and slo; copy systems/fastapi-app/system.yaml to start")
    builder = _Builder(path)
    return builder.build(node, ()), builder.lines


#: The parser's contexts that start at an opening bracket or quote: the error shows up lines later (where
#: the next key or the end of the file is), but the fix is where it opened.
_OPENERS = {"while parsing a flow mapping": "'{'", "while parsing a flow sequence": "'['",
            "while scanning a quoted scalar": "quote"}


def _yaml_error(exc: yaml.YAMLError, path: Path) -> SpecError:
    """A located SpecError for a PyYAML parse error. An unclosed ``{``, ``[`` or quote is reported at the line
    where it opens, naming the line where the parser gave up; any other error at the parser's problem line."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
    opened = getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if opened is not None and context in _OPENERS and opened.line + 1 != line:
        where = f"at line {line}" if line is not None else "later"
        return SpecError(f"invalid YAML: the {_OPENERS[context]} opened on this line is not closed "
                         f"({where}: {problem})", path, opened.line + 1)
    if opened is not None and context and opened.line + 1 != line:
        problem += f" ({context} that starts at line {opened.line + 1})"
    return SpecError(f"invalid YAML: {problem}", path, line)


class _Builder:
    """Plain data from a composed YAML node tree, recording each key's line and refusing a tree that
    expands (through aliases) past :data:`MAX_VALUES` values or :data:`MAX_DEPTH` levels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[Loc, int] = {}
        self.count = 0
        # One constructor resolves every scalar (ints, floats, bools, nulls) the way safe_load would.
        self.scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_VALUES or len(loc) > MAX_DEPTH:
            what = f"more than {MAX_VALUES:,} values" if self.count > MAX_VALUES else f"deeper than {MAX_DEPTH} levels"
            raise SpecError(f"the spec expands to {what} (YAML aliases nested or recursive?)", self.path,
                            node.start_mark.line + 1, hint="write the values out instead of nesting aliases")
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                if key in out:
                    raise SpecError(f"duplicate key '{key}'", self.path, key_node.start_mark.line + 1)
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*loc, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node, deep=True)


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest known prefix of ``loc`` (a missing key points at its parent)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
