"""Request sources the benchmarks pick from, and the dev tokens they carry.

Some requests may be made once per (client, target) pair only — a vote per viewer and poll, a payment
per idempotency key — and an edge rate limit caps each client's rate, so :class:`PairRequests` makes
request ``g`` of the whole run as client ``g mod U`` on target ``g div U``: with U clients, one client
sends one request every U/rate seconds and no pair repeats.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loadgen import render_request


def _authorized(method: str, path: str, host: str, token: str, bodies: list[bytes], index: int) -> bytes:
    """One request carrying ``token`` as a bearer, with JSON body ``bodies[index % n]`` when there are bodies."""
    headers = {"authorization": f"Bearer {token}"}
    body = b""
    if bodies:
        body = bodies[index % len(bodies)]
        headers["content-type"] = "application/json"
    return render_request(method, path, host, body=body, headers=headers)


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
        return _authorized(self.method, self.path.format(target=self.targets[index // users]), host,
                           self.tokens[index % users], self.bodies, index)


@dataclass
class TokenRequests:
    """GET ``path`` as viewer ``index % len(tokens)`` (e.g. /auth/me)."""

    path: str
    tokens: list[str]
    expected: frozenset[int] = frozenset({200})

    def build(self, index: int, host: str) -> bytes:
        return render_request("GET", self.path, host,
                              headers={"authorization": f"Bearer {self.tokens[index % len(self.tokens)]}"})


@dataclass
class KeyedRequests:
    """``method path`` spread round robin over groups (e.g. tenants), each request with a key header of its
    own (e.g. an ``Idempotency-Key``), so no two requests of a run are the same operation.

    Request ``i`` goes as group ``g = i % G``: token ``tokens[g][j % len]`` and JSON body
    ``bodies[g][j % len]`` with ``j = i // G``, and header ``key_header: <tag>-<i>``. Callers hand each step
    a fresh index range (so keys never repeat) and a fresh ``tag`` per run.
    """

    path: str
    tokens: list[list[str]]
    bodies: list[list[bytes]]
    tag: str
    key_header: str = "idempotency-key"
    method: str = "POST"
    expected: frozenset[int] = frozenset({201})

    def build(self, index: int, host: str) -> bytes:
        g, j = index % len(self.tokens), index // len(self.tokens)
        body = self.bodies[g][j % len(self.bodies[g])]
        return render_request(self.method, self.path, host, body=body, headers={
            "authorization": f"Bearer {self.tokens[g][j % len(self.tokens[g])]}",
            "content-type": "application/json", self.key_header: f"{self.tag}-{index}"})


def cached_tokens(cache: Path, scope: str, count: int, mint: Callable[[str], str], *, ttl_s: int = 86400,
                  min_left_s: int = 3 * 3600, on_progress: Callable[[int], None] | None = None) -> list[str]:
    """``count`` client tokens (subjects ``bench-client-<i>``) for ``scope`` (the signing key and the claims
    they carry, see ``SystemBench.token_scope``), minted once and kept in ``cache`` while valid.

    RS256 signing costs about half a millisecond per token, so 20,000 tokens take ~10 s to mint; they are
    reused by later runs until fewer than ``min_left_s`` seconds of their lifetime are left.
    """
    path = cache / f"tokens-{scope}.json"
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


# ---------------------------------------------------------------------- single-use tokens

_RECORD = 1024  # bytes per token record: an RS256 dev token is ~700 bytes (2048-bit key, a few claims)


class TokenFile:
    """Single-use client tokens in a file of fixed-width records, minted ahead and kept between runs.

    A run that models first-seen clients (a viewer voting once per poll with a token the system has never
    verified) needs one token per request: hundreds of thousands per run. Signing costs ~0.5 ms each
    (RS256, 2048-bit), so they are minted ahead, in parallel, appended to ``tokens-<scope>-single.bin`` and
    reused by later runs (each run starts the system with empty caches, so a token is new to every run);
    record ``i`` is token ``i``, read through ``mmap`` by the load generator processes (only the path is
    pickled to them). The file is dropped and minted again when fewer than ``min_left_s`` seconds of its
    first token's lifetime are left.
    """

    def __init__(self, cache: Path, scope: str, *, ttl_s: int = 7 * 86400, min_left_s: int = 3 * 3600) -> None:
        self.path = cache / f"tokens-{scope}-single.bin"
        self.meta = cache / f"tokens-{scope}-single.json"
        self.ttl_s = ttl_s
        try:
            expires_at = json.loads(self.meta.read_text())["expires_at"]
            if expires_at - time.time() < min_left_s:
                raise ValueError("expiring")
        except (OSError, ValueError, KeyError, TypeError):
            self.path.unlink(missing_ok=True)
            cache.mkdir(parents=True, exist_ok=True)
            self.meta.write_text(json.dumps({"expires_at": int(time.time()) + ttl_s, "record_bytes": _RECORD}))
            self.path.write_bytes(b"")

    @property
    def count(self) -> int:
        """Tokens in the file."""
        return self.path.stat().st_size // _RECORD

    def ensure(self, count: int, mint_batch: Callable[[int, int], list[str]],
               on_progress: Callable[[int], None] | None = None) -> int:
        """Mint tokens until the file holds ``count``; ``mint_batch(first, n)`` signs tokens first..first+n-1.

        Returns how many were minted now (0 when the file already had enough).
        """
        have = self.count
        if have >= count:
            return 0
        with self.path.open("ab") as out:
            first = have
            while first < count:
                n = min(20_000, count - first)
                for token in mint_batch(first, n):
                    raw = token.encode("ascii")
                    if len(raw) > _RECORD:
                        raise ValueError(f"token of {len(raw)} bytes does not fit a {_RECORD}-byte record")
                    out.write(raw.ljust(_RECORD, b" "))
                out.flush()
                first += n
                if on_progress is not None:
                    on_progress(n)
        return count - have


@dataclass
class SingleUseRequests:
    """``method path.format(target=...)`` as client ``index`` (token ``index`` of a :class:`TokenFile`) on
    ``targets[index // per_target]``: every request carries a token used nowhere else in the run.

    Rendering an index beyond the file (or the targets) raises ``IndexError``: callers reserve index ranges
    and make sure the tokens exist before a step (:meth:`TokenFile.ensure`).
    """

    path: str
    token_file: Path
    targets: list[str]
    per_target: int
    bodies: list[bytes] = field(default_factory=list)
    method: str = "POST"
    expected: frozenset[int] = frozenset({202})

    def __post_init__(self) -> None:
        self._map: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_map"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._map = None

    @property
    def capacity(self) -> int:
        """How many distinct (client, target) requests the targets can take."""
        return self.per_target * len(self.targets)

    def target_of(self, index: int) -> str:
        """The target request ``index`` goes to."""
        return self.targets[index // self.per_target]

    def token(self, index: int) -> str:
        """Token ``index`` (mapped on first use; mapped again when the file has grown since)."""
        end = (index + 1) * _RECORD
        if self._map is None or len(self._map) < end:
            import mmap

            with self.token_file.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < end:
                    raise IndexError(f"token {index} has not been minted ({size // _RECORD} in {self.token_file})")
                self._map = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        return self._map[index * _RECORD:end].rstrip(b" ").decode("ascii")

    def build(self, index: int, host: str) -> bytes:
        return _authorized(self.method, self.path.format(target=self.targets[index // self.per_target]), host,
                           self.token(index), self.bodies, index)
