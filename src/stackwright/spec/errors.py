"""The one error type a bad spec produces: what is wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SpecError(Exception):
    """A problem in a system.yaml, located to a file and line."""

    message: str
    file: Path | None = None
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"


def did_you_mean(value: object, options: Iterable[object], *, listed: str | None = "one of") -> str | None:
    """A hint for a ``value`` that is not one of ``options``: ``did you mean 'x'?`` naming the closest option
    (:func:`difflib.get_close_matches` on the text, case ignored, so ``get`` finds ``GET``), else
    ``<listed>: a, b, c`` naming them all, or None when ``listed`` is None or there are no options."""
    names = [str(option) for option in options]
    by_lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1)
    if close:
        return f"did you mean '{by_lower[close[0]]}'?"
    return f"{listed}: {', '.join(names) or 'none'}" if listed else None
