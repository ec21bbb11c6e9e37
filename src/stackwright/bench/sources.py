"""Request sources the benchmarks pick from, and the dev tokens they carry.

Some requests may be made once per (client, target) pair only — a vote per viewer and poll, a payment
per idempotency key — and an edge rate limit caps each client's rate, so :class:`PairRequests` makes
request ``g`` of the whole run as client ``g mod U`` on target ``g div U``: with U clients, one client
sends one request every U/rate seconds and no pair repeats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .loadgen import render_request


@dataclass
class PairRequests:
    """``method path.format(target=...)`` as client ``g % len(tokens)`` on ``targets[g // len(tokens)]``.

    ``bodies`` (JSON, sent with ``content-type: application/json``) rotate with ``g``; empty means no body.
    Rendering past :attr:`capacity` raises ``IndexError``: callers reserve index ranges.
    """

    path: str
    tokens: list[str]
    targets: list[str]
    bodies: list[bytes] = field(default_factory=list)
    method: str = "POST"
    expected: frozenset[int] = frozenset({202})

    @property
    def capacity(self) -> int:
        """How many distinct (client, target) requests this source can render."""
        return len(self.tokens) * len(self.targets)

    def target_of(self, index: int) -> str:
        """The target request ``index`` goes to."""
        return self.targets[index // len(self.tokens)]

    def build(self, index: int, host: str) -> bytes:
        users = len(self.tokens)
        target = self.targets[index // users]
        headers = {"authorization": f"Bearer {self.tokens[index % users]}"}
        body = b""
        if self.bodies:
            body = self.bodies[index % len(self.bodies)]
            headers["content-type"] = "application/json"
        return render_request(self.method, self.path.format(target=target), host, body=body, headers=headers)


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
    """``count`` client tokens (subjects ``bench-client-<i>``) signed with key ``kid``, minted once and kept
    in ``cache`` while valid.

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
        tokens.append(mint(f"bench-client-{i}"))
        if on_progress is not None and i % 500 == 499:
            on_progress(500)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"expires_at": expires_at, "tokens": tokens}))
    tmp.replace(path)
    return tokens
