"""Request sources for the voting benchmark, and the viewer tokens they carry.

Every vote must come from a different (viewer, poll) pair or it is rejected as a duplicate, and the edge
limits each viewer to 5 requests per second, so request ``g`` of the whole run is cast by viewer
``g mod U`` in poll ``g div U``: with U viewers, one viewer sends one request every U/rate seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .loadgen import render_request

OPTIONS = ("Aurora", "Borealis", "Cascade", "Dune")


@dataclass
class VoteRequests:
    """POST /polls/{poll}/votes, viewer ``g % len(tokens)`` in poll ``polls[g // len(tokens)]``."""

    tokens: list[str]
    polls: list[str]
    expected: frozenset[int] = frozenset({202})
    _bodies: list[bytes] = field(default_factory=list, repr=False)

    @property
    def capacity(self) -> int:
        """How many distinct votes this source can render."""
        return len(self.tokens) * len(self.polls)

    def poll_of(self, index: int) -> str:
        return self.polls[index // len(self.tokens)]

    def build(self, index: int, host: str) -> bytes:
        users = len(self.tokens)
        poll = self.polls[index // users]  # IndexError past capacity: the caller reserves ranges
        if not self._bodies:
            self._bodies = [json.dumps({"option": o}, separators=(",", ":")).encode() for o in OPTIONS]
        body = self._bodies[index % len(OPTIONS)]
        return render_request("POST", f"/polls/{poll}/votes", host, body=body, headers={
            "authorization": f"Bearer {self.tokens[index % users]}", "content-type": "application/json"})


@dataclass
class TokenRequests:
    """GET ``path`` as viewer ``index % len(tokens)`` (e.g. /auth/me)."""

    path: str
    tokens: list[str]
    expected: frozenset[int] = frozenset({200})

    def build(self, index: int, host: str) -> bytes:
        return render_request("GET", self.path, host,
                              headers={"authorization": f"Bearer {self.tokens[index % len(self.tokens)]}"})


def cached_tokens(cache: Path, kid: str, count: int, mint: Callable[[str], str], *, ttl_s: int = 86400,
                  min_left_s: int = 3 * 3600, on_progress: Callable[[int], None] | None = None) -> list[str]:
    """``count`` viewer tokens signed with key ``kid``, minted once and kept in ``cache`` while valid.

    RS256 signing costs about half a millisecond per token, so 20,000 tokens take ~10 s to mint; they are
    reused by later runs until fewer than ``min_left_s`` seconds of their lifetime are left.
    """
    path = cache / f"tokens-{kid}.json"
    try:
        saved = json.loads(path.read_text())
        if saved["expires_at"] - time.time() > min_left_s and len(saved["tokens"]) >= count:
            return saved["tokens"][:count]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    expires_at = int(time.time()) + ttl_s
    tokens = []
    for i in range(count):
        tokens.append(mint(f"bench-viewer-{i}"))
        if on_progress is not None and i % 500 == 499:
            on_progress(500)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"expires_at": expires_at, "tokens": tokens}))
    tmp.replace(path)
    return tokens
