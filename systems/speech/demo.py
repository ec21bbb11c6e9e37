"""`stackwright demo speech`: stream the committed corpus through the gateway (vosk-server protocol, as a stock
vosk client does), print each transcript next to its reference, the word error rate, and the user's usage as
imp-backend-api reports it once sqs-data-updator has stored it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from rich.table import Table

from stackwright.local.demokit import Client, DemoContext, bearer
from stackwright.plugins import load_helper

SIZE_HELP = "corpus clips to stream (at most 32)"
DEFAULT_SIZE = 32
STREAMS_AT_ONCE = 2  # a client per decoding thread on a 2-CPU machine: stt-api busy without queueing long




async def run(ctx: DemoContext) -> bool:
    """Stream ``ctx.size`` clips; True when every stream ended normally, WER <= 0.15 and the usage shown
    equals the audio sent."""
    kit = load_helper(__file__, "speechkit")
    clips = kit.load_corpus(max(1, min(ctx.size, 32)))
    ws_url = kit.asr_url(ctx.state)
    user = f"demo-{uuid.uuid4().hex[:6]}"
    token = ctx.idp().mint(user, [])
    console = ctx.console
    console.print(f"streaming {len(clips)} clips ({sum(c.seconds for c in clips):.0f} s of audio) to {ws_url} "
                  f"as {user}, {STREAMS_AT_ONCE} at a time …")
    gate = asyncio.Semaphore(STREAMS_AT_ONCE)

    async def one(clip: Any) -> Any:
        async with gate:
            return await kit.stream(ws_url, clip.pcm, token=token)

    started = time.monotonic()
    results = await asyncio.gather(*(one(c) for c in clips))
    elapsed = time.monotonic() - started
    table = Table(title="transcripts (through the gateway, ws-proxy and stt-api)")
    for col in ("clip", "reference", "transcript", "errors", "close"):
        table.add_column(col)
    ok = True
    for clip, result in zip(clips, results, strict=True):
        errors, words = kit.word_errors(clip.text, result.text)
        ok &= result.close_code == 1000
        table.add_row(clip.name, clip.text, result.text, f"{errors}/{words}", str(result.close_code))
    console.print(table)
    wer = kit.wer([(c.text, r.text) for c, r in zip(clips, results, strict=True)])
    audio_s = sum(c.seconds for c in clips)
    console.print(f"WER {wer:.3f} over {sum(len(kit.normalize(c.text)) for c in clips)} words; "
                  f"{audio_s:.1f} s of audio in {elapsed:.1f} s ({audio_s / elapsed:.2f}x real time)")
    expected_ms = sum(len(c.pcm) * 1000 // (2 * kit.SAMPLE_RATE) for c in clips)
    usage: dict[str, Any] = {}
    # /account is routed on the backend. host: the gateway's address with that Host header.
    backend = {"host": ctx.state["hosts"]["backend"].removeprefix("http://")}
    async with Client(ctx.state["gateway"]) as client:
        for _ in range(60):  # the usage records travel ws-proxy -> backend -> queue -> updater -> Postgres
            reply = await client.get("/account/usage", headers={**bearer(token), **backend})
            usage = reply.body if reply.status == 200 else {}
            if usage.get("sessions") == len(clips):
                break
            await asyncio.sleep(0.5)
    console.print(f"usage of {user}: {usage.get('audio_seconds')} s in {usage.get('sessions')} sessions "
                  f"(sent {expected_ms / 1000:.3f} s in {len(clips)} sessions)")
    counted = usage.get("sessions") == len(clips) and \
        abs(float(usage.get("audio_seconds", 0)) * 1000 - expected_ms) <= len(clips)
    return ok and wer <= 0.15 and counted
