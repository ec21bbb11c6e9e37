"""The per-process log files under ``<state dir>/logs/``: their line format, reading a tail, following them.

The supervisor writes each line a process prints as ``<UTC time, ISO 8601 with milliseconds> <text>``, so
``stackwright logs --since`` and the dashboard can place lines in time without the process having to log
timestamps itself. Lines written before that format (no leading timestamp) are still read, with no time.

Following works by polling sizes rather than inotify (portable, and a few files every quarter second cost
nothing): a process that restarts keeps appending to the same file, and a file that shrinks or is
replaced (a fresh ``up`` after deleting the folder) is read again from its start.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (.*)$", re.DOTALL)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Files in logs/ that are not a process's output.
_NOT_PROCESSES = frozenset({"runner"})


def stamp(text: str, now: float | None = None) -> str:
    """One log-file line: ``text`` behind the current UTC time (the supervisor's format)."""
    when = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return f"{when.strftime('%Y-%m-%dT%H:%M:%S.')}{when.microsecond // 1000:03d}Z {text}"


@dataclass(frozen=True)
class LogLine:
    """One line of one process's log; ``ts`` is seconds since the epoch, None for an unstamped line."""

    process: str
    ts: float | None
    text: str

    def to_dict(self) -> dict[str, object]:
        return {"process": self.process, "ts": self.ts, "text": self.text}


def parse_line(process: str, raw: str) -> LogLine:
    """Split a log-file line into its timestamp and text (no timestamp: ``ts`` None, text as is)."""
    raw = raw.rstrip("\n")
    m = _STAMP.match(raw)
    if m is None:
        return LogLine(process, None, raw)
    return LogLine(process, datetime.fromisoformat(m.group(1)).timestamp(), m.group(2))


def parse_since(value: str, now: float | None = None) -> float:
    """``--since``: a duration back from now (``90s``, ``5m``, ``1.5h``, ``2d``) or an ISO 8601 time; returns
    epoch seconds. Raises ValueError with a one-line reason."""
    now = now if now is not None else time.time()
    m = _DURATION.match(value.strip())
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since takes a duration like 30s, 5m, 2h, 1d or an ISO time (got {value!r})") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a bare time is local time, as people type it
    return when.timestamp()


def processes(log_dir: Path) -> list[str]:
    """The processes that have a log file, by name."""
    if not log_dir.is_dir():
        return []
    return sorted(p.stem for p in log_dir.glob("*.log") if p.stem not in _NOT_PROCESSES)


def tail(log_dir: Path, names: Iterable[str], *, lines: int | None = None, since: float | None = None,
         upto: Mapping[str, int] | None = None) -> list[LogLine]:
    """The last ``lines`` lines (per process, as ``docker compose logs --tail``) at or after ``since``, merged
    across processes in time order (unstamped lines keep their file order, ahead of stamped ones). ``upto``
    caps how many bytes of a file are read (a :class:`Follower`'s offsets: what it will not print again)."""
    out: list[LogLine] = []
    for name in names:
        path = log_dir / f"{name}.log"
        try:
            with path.open("rb") as fh:
                data = fh.read(upto[name]) if upto is not None and name in upto else fh.read()
        except OSError:
            continue
        parsed = [parse_line(name, raw) for raw in data.decode(errors="replace").splitlines()]
        if since is not None:
            parsed = [ln for ln in parsed if ln.ts is not None and ln.ts >= since]
        if lines is not None:
            parsed = parsed[-lines:] if lines > 0 else []
        out.extend(parsed)
    # sorted() is stable, so lines of one process with equal (or no) times keep their order.
    return sorted(out, key=lambda ln: ln.ts if ln.ts is not None else float("-inf"))


@dataclass
class _Cursor:
    inode: int
    offset: int
    partial: bytes = b""


@dataclass
class Follower:
    """New lines of the log files of ``names`` (every process, including ones that appear later, when None),
    from where each file ends when the follower is made; call :meth:`poll` repeatedly."""

    log_dir: Path
    names: frozenset[str] | None = None
    _cursors: dict[str, _Cursor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, path in self._files():
            st = path.stat()
            self._cursors[name] = _Cursor(st.st_ino, st.st_size)

    def _files(self) -> Iterator[tuple[str, Path]]:
        wanted = self.names if self.names is not None else processes(self.log_dir)
        for name in sorted(wanted):
            path = self.log_dir / f"{name}.log"
            if path.exists():
                yield name, path

    def offsets(self) -> dict[str, int]:
        """How far into each file the follower has read (so far: where the file ended when it was made)."""
        return {name: cur.offset for name, cur in self._cursors.items()}

    def poll(self) -> list[LogLine]:
        """Lines completed since the last call. A file that appeared since starts from its beginning (a new
        process); a file that shrank or was replaced is read again from its beginning."""
        out: list[LogLine] = []
        for name, path in self._files():
            try:
                st = path.stat()
            except OSError:
                continue
            cur = self._cursors.get(name)
            if cur is None or cur.inode != st.st_ino or st.st_size < cur.offset:
                cur = self._cursors[name] = _Cursor(st.st_ino, 0)
            if st.st_size == cur.offset:
                continue
            try:
                with path.open("rb") as fh:
                    fh.seek(cur.offset)
                    chunk = fh.read(st.st_size - cur.offset)
            except OSError:
                continue
            cur.offset += len(chunk)
            data = cur.partial + chunk
            *complete, cur.partial = data.split(b"\n")
            out.extend(parse_line(name, raw.decode(errors="replace")) for raw in complete)
        return out


def format_line(line: LogLine, width: int, *, timestamps: bool = False, color: str | None = None) -> str:
    """``process | text`` as ``up`` prints it (optionally with the time, and the process name coloured)."""
    name = f"{line.process:<{width}}"
    if color:
        name = f"\x1b[{color}m{name}\x1b[0m"
    when = ""
    if timestamps and line.ts is not None:
        when = datetime.fromtimestamp(line.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z "
    return f"{name} | {when}{line.text}"

