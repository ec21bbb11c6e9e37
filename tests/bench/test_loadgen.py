"""The open-loop generator against tiny real ASGI apps: every scheduled request is sent, latency counts from
the intended send time (coordinated omission is not hidden), several processes share one schedule."""

from __future__ import annotations

import asyncio
from typing import Any

from stackwright.bench.baseline import app as baseline_app
from stackwright.bench.loadgen import FixedRequest, LoadGenerator, StepSpec, merge, run_share
from stackwright.bench.sources import PairRequests
from tests.helpers import serve


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_every_scheduled_request_is_sent_and_answered() -> None:
    with serve(baseline_app) as url:
        host, port = _host_port(url)
        spec = StepSpec(host, port, rate=200, duration_s=1.0, warmup_s=0.25, max_connections=16, timeout_s=5)
        raw = await run_share(FixedRequest("POST", "/x", body=b"{}", expected=frozenset({202})), spec)
    result = merge(spec, [raw])
    assert result.sent == 200
    assert result.completed == result.ok == 200
    assert result.statuses == {"202": 200}
    assert result.error_rate == 0
    assert set(result.latency_ms) == {"p50", "p90", "p99", "p99.9"}
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["p99.9"]
    # 150 of the 200 requests are due after the warm-up and are measured.
    assert len(raw.latencies) // 8 == 150


def _slow_app(delay_s: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_latency_counts_from_the_intended_send_time() -> None:
    # 20 requests due over 0.4 s, one connection, 0.1 s per answer: the last one is due at 0.38 s but cannot
    # finish before 2.0 s. A closed-loop client would report ~100 ms for every request; we must not.
    with serve(_slow_app(0.1)) as url:
        host, port = _host_port(url)
        spec = StepSpec(host, port, rate=50, duration_s=0.4, max_connections=1, timeout_s=10)
        result = merge(spec, [await run_share(FixedRequest("GET", "/"), spec)])
    assert result.ok == 20
    assert result.max_latency_ms >= 1500
    assert result.latency_ms["p50"] >= 500
    assert result.send_lag_ms["p99"] >= 1000  # the generator's queue is visible as send lag
    assert result.achieved_rps < 0.95 * 50  # and the step shows it could not keep up


async def test_unanswered_requests_are_errors_not_silence() -> None:
    with serve(_slow_app(5.0)) as url:
        host, port = _host_port(url)
        spec = StepSpec(host, port, rate=20, duration_s=0.25, max_connections=2, timeout_s=0.5)
        result = merge(spec, [await run_share(FixedRequest("GET", "/"), spec)])
    assert result.ok == 0
    assert result.errors == 5
    assert result.statuses.get("timeout") == 5
    assert result.error_rate == 1.0


def test_processes_share_one_schedule_without_overlap() -> None:
    seen: list[tuple[str, str]] = []

    async def recorder(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await baseline_app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        seen.append((scope["path"], headers[b"authorization"].decode()))
        await baseline_app(scope, receive, send)

    tokens = [f"t{i}" for i in range(30)]
    polls = [f"p{i}" for i in range(10)]
    with serve(recorder) as url, LoadGenerator(processes=2) as gen:
        host, port = _host_port(url)
        gen.add_source("votes", PairRequests("/polls/{target}/votes", tokens, polls, [b'{"option":"A"}']))
        result = gen.run("votes", StepSpec(host, port, rate=150, duration_s=1.0, max_connections=8,
                                           index_base=30))
    assert result.sent == result.ok == 150
    assert len(seen) == 150
    assert len(set(seen)) == 150  # every (poll, viewer) pair once: no duplicate votes
    # index_base=30 skips the first poll entirely; indices 30..179 cover polls p1..p5.
    assert {path.split("/")[2] for path, _ in seen} == {"p1", "p2", "p3", "p4", "p5"}
