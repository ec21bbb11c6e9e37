"""Hostile and faulty input on the streaming endpoint: every case ends with a clear close code (or a refused
handshake) and the system keeps serving; stt-api killed mid-stream is a 1012 to the client, and usage stays
counted once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import speechkit as kit
from speech_harness import Speech
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stackwright.local.idp import DevIdP

pytestmark = pytest.mark.integration

CLIP = kit.load_corpus()[2]


def _url(speech: Speech, user: str) -> str:
    return f"{speech.ws_url}?access_token={speech.token(user)}"


async def _open(url: str) -> ClientConnection:
    return await connect(url, proxy=None, open_timeout=20, max_size=1 << 20, **kit.dial(url))


async def _close_of(ws: ClientConnection, timeout_s: float = 30) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout_s)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def _handshake_status(url: str) -> int:
    try:
        async with await _open(url):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_handshake_without_a_valid_token_is_refused(speech: Speech, tmp_path: Path) -> None:
    issuer, audience = speech.idp.issuer, speech.idp.audience
    stranger = DevIdP(tmp_path / "other-key.pem", issuer=issuer, audience=audience)
    urls = [speech.ws_url, f"{speech.ws_url}?access_token=not-a-jwt",
            f"{speech.ws_url}?access_token={speech.idp.mint('late', [], ttl_s=-120)}",
            f"{speech.ws_url}?access_token={stranger.mint('forger', [])}"]
    assert [asyncio.run(_handshake_status(u)) for u in urls] == [403] * 4
    # Directly at ws-proxy too (on EKS nothing in front of it checks tokens).
    direct = speech.service_url("ws-proxy").replace("http://", "ws://") + "/asr"
    assert asyncio.run(_handshake_status(direct)) == 403
    assert asyncio.run(_handshake_status(f"{direct}?access_token={speech.idp.mint('late', [], ttl_s=-120)}")) == 403


@pytest.mark.parametrize(("first", "then", "code", "reason"), [
    ('{"config": {"sample_rate": 8000}}', None, 1003, "sample_rate 8000"),
    ('{"config": {"sample_rate": 16000}}', b"\x01\x02\x03", 1003, "16-bit PCM"),
    ('{"config": {"sample_rate": 16000}}', "hello", 1003, "JSON"),
    ('{"config": {"sample_rate": 16000}}', '{"rate": 1}', 1003, "unknown message"),
    ('{"config": {"sample_rate": 16000}}', bytes(100_000), 1009, "exceeds"),
])
def test_bad_messages_close_with_a_clear_code(speech: Speech, first: str, then: Any, code: int,
                                              reason: str) -> None:
    async def run() -> tuple[int, str]:
        async with await _open(_url(speech, f"bad-{uuid.uuid4().hex[:6]}")) as ws:
            await ws.send(first)
            if then is not None:
                await ws.send(then)
            return await _close_of(ws)

    got_code, got_reason = asyncio.run(run())
    assert got_code == code
    assert reason in got_reason


def test_stream_over_the_maximum_duration_gets_its_text_then_1008(speech: Speech) -> None:
    # MAX_STREAM_S is 20 in tests: the clip, then silence past 20 s of audio.
    async def run() -> tuple[list[dict[str, Any]], tuple[int, str]]:
        answers: list[dict[str, Any]] = []
        async with await _open(_url(speech, "long-talker")) as ws:
            await ws.send('{"config": {"sample_rate": 16000}}')
            audio = CLIP.pcm + bytes(22 * 2 * kit.SAMPLE_RATE)
            with contextlib.suppress(ConnectionClosed):
                for i in range(0, len(audio), kit.FRAME_BYTES):
                    await ws.send(audio[i:i + kit.FRAME_BYTES])
                    answers.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            return answers, await _close_of(ws)

    answers, (code, reason) = asyncio.run(run())
    assert code == 1008 and "maximum" in reason
    text = " ".join(a["text"] for a in answers if a.get("text"))
    assert kit.word_errors(CLIP.text, text)[0] <= 2


def test_silent_socket_is_closed_1001(speech: Speech) -> None:
    async def run() -> tuple[int, str]:
        async with await _open(_url(speech, "sleepy")) as ws:
            await ws.send('{"config": {"sample_rate": 16000}}')
            return await _close_of(ws)  # IDLE_TIMEOUT_S is 3 in tests

    code, reason = asyncio.run(run())
    assert code == 1001 and "no audio" in reason


async def _stream_open(url: str) -> ClientConnection:
    """A stream that has reached stt-api (one frame answered)."""
    ws = await _open(url)
    await ws.send('{"config": {"sample_rate": 16000}}')
    await ws.send(bytes(kit.FRAME_BYTES))
    json.loads(await asyncio.wait_for(ws.recv(), 60))
    return ws


def test_per_user_stream_limit_is_1013_and_frees_up(speech: Speech) -> None:
    user = f"busy-{uuid.uuid4().hex[:6]}"

    async def run() -> tuple[tuple[int, str], str]:
        first, second = await _stream_open(_url(speech, user)), await _stream_open(_url(speech, user))
        third = await _open(_url(speech, user))
        refused = await _close_of(third)
        await first.close()
        try:
            for _ in range(20):  # a slot is free again once ws-proxy has seen the close
                await asyncio.sleep(0.5)
                with contextlib.suppress(ConnectionClosed):
                    fourth = await _stream_open(_url(speech, user))
                    await fourth.close()
                    return refused, "admitted again"
            return refused, "still refused"
        finally:
            await second.close()

    (code, reason), after = asyncio.run(run())
    assert code == 1013 and "stream limit" in reason
    assert after == "admitted again"
    # Three sessions (the refused stream is none), each with its audio as a number of seconds.
    usage = speech.wait_until(lambda: (u := speech.usage(user))["sessions"] >= 3 and u)
    asyncio.run(asyncio.sleep(1.5))  # the refused stream ended before the fourth began: its record, had it one, is in
    usage = speech.usage(user)
    assert usage["sessions"] == 3 and len(usage["recent"]) == 3, usage
    assert all(type(r["audio_seconds"]) in (int, float) for r in usage["recent"]), usage


def test_a_user_may_start_streams_the_moment_the_last_ones_closed(speech: Speech) -> None:
    # Two streams (the per-user limit) end with eof; the client opens two more as soon as it sees the closes.
    user = f"again-{uuid.uuid4().hex[:6]}"
    pcm = CLIP.pcm[: 16000 * 2]  # one second of audio

    async def run() -> list[tuple[int, str] | str]:
        outcome: list[tuple[int, str] | str] = []
        for _ in range(3):
            pair = [await _stream_open(_url(speech, user)) for _ in range(2)]
            for ws in pair:
                await ws.send(pcm)
                await ws.send('{"eof": 1}')
            for ws in pair:
                outcome.append(await _close_of(ws, 60))
        for _ in range(3):  # and when the client closes first
            pair = [await _stream_open(_url(speech, user)) for _ in range(2)]
            for ws in pair:
                await ws.close()
        last = [await _stream_open(_url(speech, user)) for _ in range(2)]
        for ws in last:
            await ws.close()
        outcome.append("both admitted")
        return outcome

    outcome = asyncio.run(run())
    assert all(o[0] == 1000 for o in outcome[:6]), outcome
    assert outcome[-1] == "both admitted"


def test_recognizer_at_capacity_refuses_with_1013(speech: Speech) -> None:
    # STT_MAX_STREAMS is 4 per stt-api replica (system.yaml); one replica runs locally.
    stats = f"{speech.service_url('stt-api')}/stats"
    speech.wait_until(lambda: httpx.get(stats).json()["streams"] == 0)  # earlier tests' streams have ended

    async def run() -> tuple[int, str]:
        held = [await _stream_open(_url(speech, f"cap-{i}-{uuid.uuid4().hex[:4]}")) for i in range(4)]
        try:
            extra = await _open(_url(speech, f"cap-extra-{uuid.uuid4().hex[:4]}"))
            await extra.send('{"config": {"sample_rate": 16000}}')
            with contextlib.suppress(ConnectionClosed):
                await extra.send(bytes(kit.FRAME_BYTES))
            return await _close_of(extra)
        finally:
            for ws in held:
                await ws.close()

    code, reason = asyncio.run(run())
    assert code == 1013 and "capacity" in reason and "retry" in reason


@pytest.mark.chaos
def test_stt_killed_mid_stream_client_reconnects_usage_counted_once(speech: Speech) -> None:
    user = f"crash-{uuid.uuid4().hex[:6]}"

    async def first_session() -> tuple[int, str, int]:
        sent = 0
        async with await _open(_url(speech, user)) as ws:
            await ws.send('{"config": {"sample_rate": 16000}}')
            with contextlib.suppress(ConnectionClosed):
                for i in range(0, len(CLIP.pcm), kit.FRAME_BYTES):
                    if i == 5 * kit.FRAME_BYTES:
                        os.kill(speech.pid("stt-api"), signal.SIGKILL)
                    await ws.send(CLIP.pcm[i:i + kit.FRAME_BYTES])
                    sent += len(CLIP.pcm[i:i + kit.FRAME_BYTES])
                    await asyncio.wait_for(ws.recv(), 60)
            code, reason = await _close_of(ws)
        return code, reason, sent

    code, reason, sent = asyncio.run(first_session())
    assert code == 1012 and "reconnect" in reason
    platform = speech.state["services"]["stt-api"][0]["platform_url"]  # readiness is on the platform port
    speech.wait_until(lambda: _ready(platform), timeout_s=90)
    again = asyncio.run(kit.stream(speech.ws_url, CLIP.pcm, token=speech.token(user)))
    assert again.close_code == 1000 and kit.word_errors(CLIP.text, again.text)[0] <= 2
    usage = speech.wait_until(lambda: (u := speech.usage(user))["sessions"] == 2 and u)
    records = speech.db_rows("SELECT session_id, sum(audio_ms) AS ms FROM usage_records WHERE user_id = $1 "
                             "GROUP BY session_id", user)
    assert len(records) == 2
    clip_ms = len(CLIP.pcm) * 1000 // (2 * kit.SAMPLE_RATE)
    cut_ms = sorted(r["ms"] for r in records if abs(r["ms"] - clip_ms) > 2) or [clip_ms]
    assert 0 < cut_ms[0] <= sent * 1000 // (2 * kit.SAMPLE_RATE)  # only audio that was sent, once
    assert usage["audio_seconds"] * 1000 == sum(r["ms"] for r in records)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
