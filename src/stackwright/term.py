"""How the CLI's output looks on the stream it goes to: colour only on a terminal, and tables as wide as the
terminal, or not cut at all when the output goes to a pipe or a file.

One place decides both for every writer (the rich consoles of ``stackwright.cli``, the process-name colours of
``up``'s log echo and of ``stackwright logs``), so ``stackwright status > file`` or ``up | tee run.log`` hold
plain text whose table rows are whole lines.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Width (characters) a table may take when the output is not a terminal: a pipe or a file has no width, and
#: rich's fallback of 80 cuts a status row (url, pid, dependencies) into several lines. Tables take only the
#: width their content needs, so this is a cap, not padding.
WIDE = 400


def _is_terminal(stream: IO[str] | Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def colour(stream: IO[str] | Any) -> bool:
    """Whether to write ANSI colour codes to ``stream``: when ``FORCE_COLOR`` is set (non-empty), always;
    when ``NO_COLOR`` is, never; otherwise only to a terminal (``isatty``) whose ``TERM`` is not ``dumb``.
    The same rules rich applies to its consoles (https://no-color.org, https://force-color.org)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR"):
        return False
    return _is_terminal(stream) and os.environ.get("TERM") != "dumb"


def width(stream: IO[str] | Any) -> int | None:
    """The width to lay out tables for ``stream``: None (rich asks the terminal, or honours ``COLUMNS``) on a
    terminal or when ``COLUMNS`` is set; :data:`WIDE` for a pipe or a file."""
    if _is_terminal(stream) or os.environ.get("COLUMNS"):
        return None
    return WIDE


def console(*, stderr: bool = False, min_width: int = 0) -> Console:
    """A rich Console for stdout (results: tables) or stderr (progress, warnings, errors), without
    highlighting (it colours numbers and paths in plain messages). Colour follows :func:`colour` (rich's own
    detection); the width follows :func:`width`, at least ``min_width`` characters (for a wide table). To a
    pipe or a file, text is not wrapped at all (rich's soft wrap): a paragraph longer than :data:`WIDE`
    stays one line, so ``grep`` finds it whole; tables are still laid out within the width."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    cols = width(stream)
    out = Console(stderr=stderr, highlight=False, width=cols, soft_wrap=cols == WIDE)
    if min_width and out.width < min_width:
        out.width = min_width
    return out
