"""stt-api: the recognizer. Speaks vosk-server's WebSocket protocol on ``/stt`` (ws-proxy is its only caller).

Protocol (as vosk-server): an optional text ``{"config": {"sample_rate": 16000}}``, then binary frames of
16 kHz mono PCM16, then ``{"eof": 1}``. Every binary frame is answered with exactly one text message,
``{"partial": "..."}`` or, when an utterance has ended, ``{"text": "...", "result": [{"conf", "end", "start",
"word"}]}`` (seconds from the start of the stream); ``{"eof": 1}`` is answered with one result holding
everything not delivered yet, and the server closes with 1000.

A caller that answers its client's frames itself (ws-proxy) sends ``"per_frame": false`` in its config: frames
then get no answer of their own; finals are sent as soon as they are decoded (in order) and ``{"partial":
...}`` whenever the partial text changes, and the result after ``{"eof": 1}`` carries ``"eof": 1`` (a final
pushed just before may cross the eof on the wire).

Capacity: at most ``STT_MAX_STREAMS`` streams per replica (each stream costs decoding time, and beyond what
the decoder keeps up with every stream falls behind real time). One more is accepted and closed at once
with 1013 (try again later) and the reason ``at capacity (N streams); retry in S s``: never queued.

Close codes of this service: 1000 done, 1003 bad data (sample rate other than 16000, odd-length frame,
unknown text message), 1009 frame over ``STT_MAX_FRAME_BYTES``, 1011 decoding failed, 1013 at capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from engine import BYTES_PER_SAMPLE, SAMPLE_RATE, Decoder, EngineConfig, StreamState, load_model, resolve
from fastapi import WebSocket, WebSocketDisconnect
from prometheus_client import Counter, Gauge

from stackwright.runtime import Problem, Service

svc = Service(title="stt-api")
app = svc.app
log = logging.getLogger("speech.stt")

CFG = EngineConfig.from_env(svc.settings.env)
MAX_STREAMS = int(svc.settings.get("STT_MAX_STREAMS", "4") or 4)
MAX_FRAME_BYTES = int(svc.settings.get("STT_MAX_FRAME_BYTES", "65536") or 65536)
RETRY_AFTER_S = int(svc.settings.get("STT_RETRY_AFTER_S", "2") or 2)

STREAMS = Gauge("stt_streams_active", "recognition streams open on this replica")
REFUSED = Counter("stt_streams_refused_total", "streams refused at capacity (close 1013)")
AUDIO = Counter("stt_audio_seconds_total", "seconds of audio received")

_decoder: Decoder | None = None
_active = 0


@svc.on_startup
async def load() -> None:
    # Loaded before the first /readyz 200, so no stream ever waits for the model.
    global _decoder, CFG
    CFG = await asyncio.to_thread(resolve, CFG)  # the device auto picks, and on a GPU its model and compute type
    model = await asyncio.to_thread(load_model, CFG)
    decoder = Decoder(model, CFG)
    await asyncio.to_thread(decoder.warm)
    decoder.start()
    _decoder = decoder
    log.info("model %s loaded on %s (%s, %d decodes at a time, %d threads each)", CFG.model, CFG.device,
             CFG.compute_type, CFG.workers, CFG.cpu_threads)


@svc.on_shutdown
async def unload() -> None:
    if _decoder is not None:
        await _decoder.stop()


@app.get("/stats")
async def stats() -> dict[str, Any]:
    """Streams open, the capacity, the decoding threads' busy seconds (summed), and, since start, where finals'
    time went: ``finals``, ``final_wait_s`` (summed seconds queued behind other decodes), ``final_decode_s``,
    ``partials``, ``partial_decode_s``, ``partials_dropped`` (stale before their turn)."""
    return {"streams": _active, "max_streams": MAX_STREAMS,
            "decode_seconds": round(_decoder.decode_seconds, 3) if _decoder else 0.0,
            "model": CFG.model, "device": CFG.device, "compute_type": CFG.compute_type, "workers": CFG.workers,
            "cpu_threads": CFG.cpu_threads,
            "window_pad_s": CFG.window_pad_s,
            **({k: round(v, 3) for k, v in _decoder.stats.items()} if _decoder else {})}


class BadStream(Exception):
    """A client error that ends the stream with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@app.websocket("/stt")
async def stt(ws: WebSocket) -> None:
    global _active
    await ws.accept()
    if _decoder is None or _active >= MAX_STREAMS:
        REFUSED.inc()
        await ws.close(1013, f"at capacity ({MAX_STREAMS} streams); retry in {RETRY_AFTER_S} s")
        return
    _active += 1
    STREAMS.inc()
    state = StreamState(_decoder)
    try:
        await _serve(ws, state)
    except BadStream as bad:
        await _close(ws, bad.code, bad.reason)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("stream failed")
        await _close(ws, 1011, "recognition failed")
    finally:
        state.close()
        _active -= 1
        STREAMS.dec()


async def _serve(ws: WebSocket, state: StreamState) -> None:
    pusher: asyncio.Task[None] | None = None  # answers as they happen (config "per_frame": false)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                if len(data) > MAX_FRAME_BYTES:
                    raise BadStream(1009, f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
                if len(data) % BYTES_PER_SAMPLE:
                    raise BadStream(1003, "frames must be 16-bit PCM (an even number of bytes)")
                state.feed(data)
                AUDIO.inc(len(data) / BYTES_PER_SAMPLE / SAMPLE_RATE)
                if pusher is None:
                    await ws.send_text(json.dumps(state.reply()))
                continue
            request = parse_text(message.get("text") or "")
            if "eof" in request:
                if pusher is not None:  # it sends what is ready and stops; finish() answers the rest
                    state.ending = True
                    state.changed.set()
                    await pusher
                result = await state.finish()
                if pusher is not None:
                    result["eof"] = 1  # tells this result from a pushed final that crossed the eof
                await ws.send_text(json.dumps(result))
                await ws.close(1000)
                return
            # A config message gets no answer (as in vosk-server).
            config = request.get("config")
            if pusher is None and isinstance(config, dict) and config.get("per_frame") is False:
                pusher = asyncio.create_task(_push(ws, state))
    finally:
        if pusher is not None and not pusher.done():
            pusher.cancel()


async def _push(ws: WebSocket, state: StreamState) -> None:
    """Answers as they happen, for a caller that answers its own client's frames (ws-proxy): each final once it
    is decoded, in order, and the partial text whenever it changed. Frames get no answer of their own, so the
    caller need not wait for this hop before answering a frame: the frames' round trips to the client skip it."""
    sent = ""
    try:
        while not state.ending:
            await state.changed.wait()
            state.changed.clear()
            while state.finals and state.finals[0].done():
                await ws.send_text(json.dumps(state.reply()))
            if state.partial_text != sent and not state.finals:
                sent = state.partial_text
                await ws.send_text(json.dumps({"partial": sent}))
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the stream is over; the receiving loop sees it too
    except Exception:
        log.exception("stream failed")
        await _close(ws, 1011, "recognition failed")


def parse_text(text: str) -> dict[str, Any]:
    """Check a text message: ``{"config": {"sample_rate": 16000, ...}}`` or ``{"eof": 1}``.

    Raises BadStream(1003) for anything else, and for a sample rate other than 16000 (Whisper's rate: the
    client resamples, as a browser's AudioContext or sox does in one step).
    """
    try:
        request = json.loads(text)
    except ValueError:
        raise BadStream(1003, "text messages must be JSON: a config or {\"eof\": 1}") from None
    if not isinstance(request, dict) or not ({"config", "eof"} & request.keys()):
        raise BadStream(1003, "unknown message: expected {\"config\": {...}} or {\"eof\": 1}")
    config = request.get("config")
    if config is not None:
        rate = config.get("sample_rate") if isinstance(config, dict) else None
        if rate is not None and rate != SAMPLE_RATE:
            raise BadStream(1003, f"sample_rate {rate} not supported: send {SAMPLE_RATE} Hz mono PCM16")
    return request


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError):  # already closed by the client
        await ws.close(code, reason)


@app.get("/{path:path}", include_in_schema=False)
async def not_found(path: str) -> None:
    raise Problem(404, "no such endpoint: stt-api serves the WebSocket /stt")
