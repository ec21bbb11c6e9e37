"""Open-loop HTTP load at a fixed request rate, latency measured from the *intended* send time.

This is wrk2's model in Python: request ``i`` of a step is due at ``t0 + i / rate`` whatever happened to
the earlier ones. If the server (or the generator) falls behind, requests wait in the generator's queue
and that wait is part of their latency, so coordinated omission cannot hide a stall. The time between a
request's due time and the moment it was actually written to a socket is reported separately as
``send_lag`` — when that grows, the generator (not the server) is the bottleneck and the step says so.
The schedule itself is :func:`stackwright.bench.openloop.open_loop`, shared with the fault drills' sender.

The client is deliberately lean so it is not the bottleneck on a small machine: raw asyncio protocols on
uvloop, keep-alive HTTP/1.1 connections, requests pre-rendered to bytes, and responses parsed by
httptools (llhttp, in C). Several generator processes can share one schedule (``processes=N``): process
``p`` sends requests ``p, p + N, p + 2N, ...`` of the same global timeline.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httptools

from .openloop import open_loop
from .stats import StepResult, percentile

MAX_SAMPLES = 5
_now = time.perf_counter  # loop.time() has only 1 ms resolution on uvloop


class RequestSource(Protocol):
    """Renders request ``index`` of a step to raw HTTP/1.1 bytes; must be picklable."""

    expected: frozenset[int]  # statuses that count as success

    def build(self, index: int, host: str) -> bytes: ...


def render_request(method: str, path: str, host: str, *, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> bytes:
    """One keep-alive HTTP/1.1 request as bytes."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class FixedRequest:
    """The same request every time (e.g. a GET of one resource)."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    expected: frozenset[int] = frozenset({200})
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def build(self, index: int, host: str) -> bytes:
        raw = self._cache.get(host)
        if raw is None:
            raw = self._cache[host] = render_request(self.method, self.path, host, body=self.body,
                                                     headers=self.headers)
        return raw


@dataclass
class StepSpec:
    """One fixed-rate step as sent to a generator process."""

    host: str
    port: int
    rate: float  # requests per second, all processes together
    duration_s: float
    warmup_s: float = 0.0  # requests due in the first warmup_s are sent but not measured
    max_connections: int = 256
    timeout_s: float = 10.0  # what is still unanswered this long after the schedule ends is an error
    start_at: float = 0.0  # wall-clock (time.time()) start of the shared schedule
    index_base: int = 0  # request i of this step is built as source.build(index_base + i)


@dataclass
class RawResult:
    """What one generator process measured in one step (merged by :func:`merge`)."""

    sent: int = 0
    completed: int = 0
    ok: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: bytes = b""  # array('d') of seconds, measured requests only (any status)
    send_lags: bytes = b""  # array('d') of seconds
    measured_ok: int = 0
    measured_start: float = 0.0  # wall clock
    last_done: float = 0.0  # wall clock of the last measured completion
    first_due: float = 0.0  # wall clock when the first request was due
    last_ok: float = 0.0  # wall clock of the last expected answer (any request)
    connections: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    samples: list[str] = field(default_factory=list)
    failure: str = ""


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.current: tuple[int, float, bool] | None = None  # (index, due, measured)
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, due: float, measured: bool, payload: bytes) -> None:
        self.current = (index, due, measured)
        assert self.transport is not None
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.failed(self, "bad-response")
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        if len(self.body) < 4:
            self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        current, self.current = self.current, None
        body = b"".join(self.body)
        self.body = []
        keep = self.parser.should_keep_alive()
        self.gen.completed(self, current, status, body, keep)
        if not keep and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class _Generator:
    """Runs one process's share of a step on the current event loop."""

    def __init__(self, source: RequestSource, spec: StepSpec, offset: int, stride: int) -> None:
        self.source = source
        self.spec = spec
        self.offset = offset
        self.stride = stride
        self.hostport = f"{spec.host}:{spec.port}"
        self.loop = asyncio.get_running_loop()
        self.pending: collections.deque[tuple[int, float, bool]] = collections.deque()
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.in_flight = 0
        self.result = RawResult()
        self.lat = array.array("d")
        self.lags = array.array("d")
        self.statuses: collections.Counter[int] = collections.Counter()
        self.expected = source.expected
        self.last_done = 0.0
        self.last_ok = 0.0
        self.done = asyncio.Event()
        self.scheduled_all = False
        self.connect_errors = 0

    # -- connections ------------------------------------------------------------------------

    async def _open(self) -> None:
        self.opening += 1
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.spec.host, self.spec.port)
        except OSError:
            self.connect_errors += 1
            await asyncio.sleep(0.05)
            return
        finally:
            self.opening -= 1
        self.conns.add(conn)
        self.result.connections = max(self.result.connections, len(self.conns))
        self.ready(conn)

    async def warm(self, count: int) -> None:
        await asyncio.gather(*(self._open() for _ in range(count)))

    def ready(self, conn: _Conn) -> None:
        if self.pending:
            index, due, measured = self.pending.popleft()
            self._send(conn, index, due, measured)
        else:
            self.idle.append(conn)

    def _send(self, conn: _Conn, index: int, due: float, measured: bool) -> None:
        now = _now()
        if measured:
            self.lags.append(now - due)
        self.in_flight += 1
        self.result.sent += 1
        conn.send(index, due, measured, self.source.build(self.spec.index_base + index, self.hostport))

    def pump(self) -> None:
        while self.pending and self.idle:
            conn = self.idle.pop()
            index, due, measured = self.pending.popleft()
            self._send(conn, index, due, measured)
        if self.pending and len(self.conns) + self.opening < self.spec.max_connections:
            # Open at most as many as are waiting, a few at a time.
            for _ in range(min(len(self.pending), 8, self.spec.max_connections - len(self.conns) - self.opening)):
                self.loop.create_task(self._open())

    # -- callbacks from connections ---------------------------------------------------------

    def completed(self, conn: _Conn, current: tuple[int, float, bool] | None, status: int, body: bytes,
                  keep: bool) -> None:
        if current is None:
            return
        now = _now()
        self.in_flight -= 1
        _, due, measured = current
        self.result.completed += 1
        self.statuses[status] += 1
        good = status in self.expected
        if good:
            self.result.ok += 1
            self.last_ok = now
        elif len(self.result.samples) < MAX_SAMPLES:
            self.result.samples.append(f"{status}: {body[:300].decode('utf-8', 'replace')}")
        if measured:
            self.lat.append(now - due)
            if good:
                self.result.measured_ok += 1
            self.last_done = now
        if keep:
            self.ready(conn)
        self._check_done()

    def failed(self, conn: _Conn, why: str) -> None:
        if conn.current is not None:
            conn.current = None
            self.in_flight -= 1
            self.result.errors += 1
            self.statuses[-1] += 1
            if len(self.result.samples) < MAX_SAMPLES:
                self.result.samples.append(f"error: {why}")
            self._check_done()

    def lost(self, conn: _Conn) -> None:
        self.failed(conn, "connection closed")
        self.conns.discard(conn)
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        if self.pending:
            self.pump()

    def _check_done(self) -> None:
        if self.scheduled_all and not self.pending and self.in_flight == 0:
            self.done.set()

    # -- the schedule -----------------------------------------------------------------------

    async def run(self) -> RawResult:
        spec = self.spec
        total = round(spec.rate * spec.duration_s)
        mine = range(self.offset, total, self.stride)
        await self.warm(min(spec.max_connections, max(4, int(spec.rate * 0.002) + 4)))
        # Map the shared wall-clock start onto this loop's clock.
        start_at = spec.start_at or time.time()  # 0 means "now" (a single process run directly)
        t0 = _now() + (start_at - time.time())
        measure_from = t0 + spec.warmup_s
        cpu0 = time.process_time()
        wall0 = time.perf_counter()

        def queue(index: int, due: float) -> None:
            # Requests due within one tick go out together; their lateness is recorded as send lag and
            # counts in their latency.
            self.pending.append((index, due, due >= measure_from))

        await open_loop(spec.rate, queue, indices=mine, t0=t0, flush=self.pump)
        self.scheduled_all = True
        self._check_done()
        end_of_schedule = t0 + spec.duration_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), max(0.1, end_of_schedule + spec.timeout_s - _now()))
        unanswered = len(self.pending) + self.in_flight
        res = self.result
        res.errors += unanswered + self.connect_errors
        if unanswered:
            self.statuses[-2] += unanswered
            if len(res.samples) < MAX_SAMPLES:
                res.samples.append(f"timeout: {unanswered} requests unanswered {spec.timeout_s:g}s after the end")
        res.statuses = {("timeout" if s == -2 else "error" if s == -1 else str(s)): c for s, c in self.statuses.items()}
        res.latencies = self.lat.tobytes()
        res.send_lags = self.lags.tobytes()
        offset = time.time() - _now()
        res.measured_start = measure_from + offset
        res.last_done = (self.last_done + offset) if self.last_done else 0.0
        res.last_ok = (self.last_ok + offset) if self.last_ok else 0.0
        res.first_due = t0 + offset
        res.cpu_s = time.process_time() - cpu0
        res.wall_s = time.perf_counter() - wall0
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        return res


async def run_share(source: RequestSource, spec: StepSpec, offset: int = 0, stride: int = 1) -> RawResult:
    """Run one process's share of a step on the running loop (tests call this directly)."""
    return await _Generator(source, spec, offset, stride).run()


def merge(spec: StepSpec, parts: list[RawResult]) -> StepResult:
    """Combine the generator processes' results into one step result."""
    out = StepResult(offered_rps=spec.rate, duration_s=spec.duration_s)
    lat = array.array("d")
    lags = array.array("d")
    statuses: collections.Counter[str] = collections.Counter()
    measured_ok = 0
    starts: list[float] = []
    last = 0.0
    first_due = min((p.first_due for p in parts), default=0.0)
    last_ok = max((p.last_ok for p in parts), default=0.0)
    cpu = wall = 0.0
    for part in parts:
        if part.failure:
            raise RuntimeError(f"load generator failed: {part.failure}")
        out.sent += part.sent
        out.completed += part.completed
        out.ok += part.ok
        out.errors += part.errors
        statuses.update(part.statuses)
        lat.frombytes(part.latencies)
        lags.frombytes(part.send_lags)
        measured_ok += part.measured_ok
        starts.append(part.measured_start)
        last = max(last, part.last_done)
        out.connections += part.connections
        cpu += part.cpu_s
        wall = max(wall, part.wall_s)
        out.samples += part.samples[: MAX_SAMPLES - len(out.samples)]
    out.statuses = dict(sorted(statuses.items()))
    measured_window = spec.duration_s - spec.warmup_s
    if starts and measured_window > 0:
        start = min(starts)
        window = max(measured_window, last - start)
        out.achieved_rps = measured_ok / window
    if last_ok > first_due:
        out.throughput_rps = out.ok / (last_ok - first_due)
    ordered = sorted(lat)
    out.latency_ms = {f"p{q:g}": percentile(ordered, q) * 1000 for q in (50, 90, 99, 99.9)}
    out.max_latency_ms = ordered[-1] * 1000 if ordered else float("nan")
    lag_sorted = sorted(lags)
    out.send_lag_ms = {f"p{q:g}": percentile(lag_sorted, q) * 1000 for q in (50, 99)}
    out.generator_cpu_percent = 100.0 * cpu / wall if wall else float("nan")
    return out


# -- generator processes ----------------------------------------------------------------------
#
# Each generator is a fresh interpreter (``python -m stackwright.bench.genworker OFFSET STRIDE``) talking
# pickled messages over its stdin/stdout pipes: no fork of a process that has threads and loops running,
# and no re-import of the caller's __main__ (multiprocessing's spawn would do that).


def worker_main(offset: int, stride: int) -> None:
    """Serve steps for a :class:`LoadGenerator` over stdin/stdout until told to stop."""
    from multiprocessing.connection import Connection

    import uvloop

    inbox = Connection(os.dup(0), writable=False)
    outbox = Connection(os.dup(1), readable=False)
    sources: dict[str, RequestSource] = {}
    while True:
        try:
            message = inbox.recv()
        except EOFError:
            return
        kind = message[0]
        if kind == "stop":
            return
        if kind == "source":
            sources[message[1]] = message[2]
            outbox.send(("ok",))
            continue
        _, name, spec = message
        try:
            result = uvloop.run(run_share(sources[name], spec, offset, stride))
        except Exception:
            result = RawResult(failure=traceback.format_exc(limit=5))
        outbox.send(("result", result))


class LoadGenerator:
    """A pool of generator processes sharing one schedule; ``run`` blocks for one step.

    Use as a context manager. Register each request source once with :meth:`add_source` (they are
    pickled to every process once), then call :meth:`run` per step.
    """

    def __init__(self, processes: int = 1) -> None:
        self.processes = max(1, processes)
        self._workers: list[tuple[subprocess.Popen[bytes], Any, Any]] = []

    def __enter__(self) -> LoadGenerator:
        from multiprocessing.connection import Connection

        for p in range(self.processes):
            proc = subprocess.Popen([sys.executable, "-m", "stackwright.bench.genworker", str(p), str(self.processes)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert proc.stdin is not None and proc.stdout is not None
            to_worker = Connection(os.dup(proc.stdin.fileno()), readable=False)
            from_worker = Connection(os.dup(proc.stdout.fileno()), writable=False)
            proc.stdin.close()
            proc.stdout.close()
            self._workers.append((proc, to_worker, from_worker))
        return self

    def __exit__(self, *exc: object) -> None:
        for _, to_worker, _ in self._workers:
            with contextlib.suppress(OSError):
                to_worker.send(("stop",))
        for proc, to_worker, from_worker in self._workers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            to_worker.close()
            from_worker.close()
        self._workers = []

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _, _ in self._workers]

    def add_source(self, name: str, source: RequestSource) -> None:
        for _, to_worker, _ in self._workers:
            to_worker.send(("source", name, source))
        for _, _, from_worker in self._workers:
            from_worker.recv()

    def run(self, name: str, spec: StepSpec, on_tick: Callable[[float], None] | None = None,
            tick_s: float = 0.5) -> StepResult:
        """Run one step on every process; ``on_tick(elapsed_s)`` is called while it runs."""
        spec.start_at = time.time() + 0.3  # time for every process to receive the step and warm up
        for _, to_worker, _ in self._workers:
            to_worker.send(("run", name, spec))
        parts: list[RawResult] = []
        began = time.monotonic()
        for proc, _, from_worker in self._workers:
            while not from_worker.poll(tick_s):
                if proc.poll() is not None:
                    raise RuntimeError(f"load generator process {proc.pid} exited with {proc.returncode}")
                if on_tick is not None:
                    on_tick(time.monotonic() - began)
            parts.append(from_worker.recv()[1])
        return merge(spec, parts)


def cpu_count() -> int:
    return os.cpu_count() or 1

