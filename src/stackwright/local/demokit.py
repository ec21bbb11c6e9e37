"""Building blocks for system demos: tokens from the dev IdP, concurrent request runs, latency summaries."""

from __future__ import annotations

import asyncio
import json as _json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..bench.stats import percentile
from ..spec import System
from .idp import DevIdP


@dataclass
class DemoContext:
    """What ``stackwright demo`` hands a system's ``demo.py`` (``async def run(ctx) -> bool``)."""

    system: System
    #: the running system's state: ``gateway`` URL, ``services``, ``resources`` URLs (local/state.py)
    state: dict[str, Any]
    console: Any  # a rich Console for progress and the result table
    #: the dev IdP's signing key of this run (mint tokens with :meth:`idp`)
    key_file: Path
    #: ``--size``: how big the scenario is (the demo's ``SIZE_HELP`` says what it counts)
    size: int
    #: requests in flight at once
    concurrency: int

    def idp(self) -> DevIdP:
        """The running system's dev identity provider, to mint tokens with."""
        return idp_for(self.system, self.key_file)

    def mint_many(self, subjects: Sequence[str], roles: list[str], *, what: str = "tokens") -> list[str]:
        """A token for each of ``subjects`` with ``roles``, in order, showing a progress bar while they are
        minted. Each is an RSA signature (10,000 take half a minute), which left a demo silent that long.

        The bar follows the console rules of ``stackwright.term``: drawn on a terminal and removed when done
        (transient); on a pipe or a file nothing at all, so a log gets no bar lines."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        idp = self.idp()
        tokens: list[str] = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=self.console, transient=True,
                      disable=not self.console.is_terminal) as progress:  # off a terminal rich would print a blank line
            task = progress.add_task(f"minting {what}", total=len(subjects))
            for subject in subjects:
                tokens.append(idp.mint(subject, roles))
                progress.advance(task)
        return tokens


def idp_for(system: System, key_file: Path) -> DevIdP:
    """The dev IdP of a running system (same key file the gateway signs with)."""
    ident = system.edge.identity
    if ident is None:
        raise ValueError(f"{system.name} has no edge.identity")
    return DevIdP(key_file, issuer=ident.issuer, audience=ident.audience, roles_claim=ident.roles_claim)


@dataclass
class RunStats:
    """Outcome of a batch of requests: status counts and latencies (seconds)."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds, by the one definition the benchmarks use too
        (:func:`stackwright.bench.stats.percentile`, nearest rank)."""
        return percentile(sorted(self.latencies), q) * 1000


@dataclass
class Reply:
    """Status and parsed JSON body (None when not JSON) of one response."""

    status: int
    body: Any


class Client:
    """A small JSON client over one aiohttp session (httpx's pool is too slow for load; see gateway.py)."""

    def __init__(self, base_url: str, *, concurrency: int = 64, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def request(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        async with self.session.request(method, self.base_url + path, json=json, data=data,
                                        headers=headers) as resp:
            raw = await resp.read()
            try:
                body = _json.loads(raw) if raw else None
            except ValueError:
                body = None
            return Reply(resp.status, body)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.request("POST", path, **kw)

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


Request = Callable[[Client], Awaitable[Reply]]


async def run_concurrently(base_url: str, requests: Sequence[Request], *, concurrency: int = 64,
                           on_progress: Callable[[int], None] | None = None) -> RunStats:
    """Send every request with at most ``concurrency`` in flight (closed loop) and collect outcomes."""
    stats = RunStats()
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    began = time.perf_counter()
    async with Client(base_url, concurrency=concurrency) as client:

        async def worker() -> None:
            while True:
                try:
                    req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    resp = await req(client)
                    stats.statuses[resp.status] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    stats.errors[exc.__class__.__name__] += 1
                stats.latencies.append(time.perf_counter() - t0)
                if on_progress is not None:
                    on_progress(1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.elapsed_s = time.perf_counter() - began
    return stats


async def wait_for(check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll ``check`` until it is true or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval_s)
    return False


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
