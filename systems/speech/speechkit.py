"""Client side of the speech system, shared by its tests, demo and bench: the corpus, a vosk-protocol
streaming client, word error rate, and the direct (bare model) baseline.

Not a service module: services never import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIPS = HERE / "corpus" / "clips"
SAMPLE_RATE = 16000
FRAME_BYTES = 6400  # 0.2 s of 16 kHz PCM16, what vosk's example clients send


@dataclass(frozen=True)
class Clip:
    """One corpus sentence: its name, reference text and 16 kHz mono PCM16 samples (bytes)."""

    name: str
    text: str
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * SAMPLE_RATE)


def load_corpus(limit: int | None = None) -> list[Clip]:
    """The committed clips in name order (all of them, or the first ``limit``)."""
    clips = []
    for wav_path in sorted(CLIPS.glob("*.wav"))[:limit]:
        with wave.open(str(wav_path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2), wav_path
            pcm = w.readframes(w.getnframes())
        clips.append(Clip(wav_path.stem, wav_path.with_suffix(".txt").read_text().strip(), pcm))
    return clips


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return str(n)


def normalize(text: str) -> list[str]:
    """Words for scoring: lower case, no punctuation, numerals 0-99 spelled out ("7" and "seven" are the
    same word to a listener, and Whisper writes numerals)."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    words: list[str] = []
    for w in text.split():
        words.extend(_number_words(int(w)).split() if w.isdigit() and int(w) < 100 else [w])
    return words


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): Levenshtein distance over words."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus word error rate of (reference, hypothesis) pairs: total errors / total reference words."""
    errors = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors += e
        words += n
    return errors / max(words, 1)


@dataclass
class StreamResult:
    """What one stream got back: partials, finals, the joined text and how it ended."""

    partials: list[str] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    final_at: float | None = None  # monotonic time the last final arrived
    speech_end_at: float | None = None  # monotonic time the last audio frame went out

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f.get("text"))


def asr_url(state: dict[str, Any]) -> str:
    """The WebSocket URL of ``/asr`` on a running system's gateway: ws-proxy's route is limited to the
    ``api`` host (``ws://api.localhost:<port>/asr``; connect with :func:`dial`)."""
    base = (state.get("hosts") or {}).get("api") or state["gateway"]
    return base.replace("http://", "ws://", 1) + "/asr"


def dial(url: str) -> dict[str, Any]:
    """``connect()`` keyword arguments reaching a ``*.localhost`` URL on the loopback address (see
    :func:`stackwright.local.routing.dial`); the Host header stays the URL's."""
    from stackwright.local.routing import dial as loopback

    return loopback(url)


async def stream(url: str, pcm: bytes, *, token: str | None = None, realtime: bool = False,
                 speed: float = 1.0, frame_bytes: int = FRAME_BYTES, sample_rate: int = SAMPLE_RATE,
                 trailing_silence_s: float = 0.0) -> StreamResult:
    """Stream ``pcm`` as a stock vosk client does: config, frames each answered once, ``{"eof": 1}``.

    ``realtime`` paces frames at the audio's own rate (a live microphone) times ``speed`` (0.5: half as fast);
    otherwise each frame is sent as soon as the previous one is answered. The token goes in ``?access_token=``
    (what browsers can do).
    Never raises for a close: the code and reason are in the result.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    if token:
        url += ("&" if "?" in url else "?") + "access_token=" + token
    audio = pcm + bytes(int(trailing_silence_s * SAMPLE_RATE) * 2)
    out = StreamResult()
    frame_s = frame_bytes / (2 * SAMPLE_RATE)
    try:
        async with connect(url, proxy=None, open_timeout=20, max_size=1 << 20, **dial(url)) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": sample_rate}}))
            start = time.monotonic()
            for i, offset in enumerate(range(0, len(audio), frame_bytes)):
                if realtime:
                    await asyncio.sleep(max(0.0, start + i * frame_s / speed - time.monotonic()))
                await ws.send(audio[offset:offset + frame_bytes])
                if offset < len(pcm) <= offset + frame_bytes:
                    out.speech_end_at = time.monotonic()
                _take(out, json.loads(await ws.recv()))
            await ws.send('{"eof" : 1}')  # with the space, byte for byte what vosk's test.py sends
            _take(out, json.loads(await ws.recv()))
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)  # the server closes after the last answer
            out.close_code, out.close_reason = ws.close_code, ws.close_reason or ""
    except ConnectionClosed as exc:
        frame = exc.rcvd
        out.close_code, out.close_reason = (frame.code, frame.reason) if frame else (1006, "")
    return out


def _take(out: StreamResult, message: dict[str, Any]) -> None:
    if "text" in message:
        out.finals.append(message)
        if message.get("text"):
            out.final_at = time.monotonic()
    elif "partial" in message:
        out.partials.append(message["partial"])


def load_engine(name: str = "speech_stt_engine") -> Any:
    """stt-api's ``engine.py`` as a module registered under ``name`` (a service folder is no package): what
    the bare baseline and the engine's own tests call."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "services" / "stt-api" / "engine.py")
    assert spec and spec.loader
    engine = importlib.util.module_from_spec(spec)
    sys.modules[name] = engine
    spec.loader.exec_module(engine)
    return engine


class BareModel:
    """The bare model: stt-api's engine and configuration (its defaults, or ``STT_*`` given in ``env``) called
    directly, no service around it. ``transcribe(pcm)`` decodes one clip as stt-api decodes a final;
    ``transcribe_all(pcms)`` decodes ``workers`` clips at a time, as stt-api's decoding threads do (the texts in
    order). Needs the `speech` extra."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.engine = engine = load_engine()
        self.cfg = engine.EngineConfig.from_env(env or {})
        self.workers: int = self.cfg.workers
        self.model = engine.load_model(self.cfg)

    def transcribe(self, pcm: bytes) -> str:
        text, _ = self.engine.decode(self.model, self.engine.pcm16_to_float(pcm), beam_size=self.cfg.beam_size,
                                     words=True, window_pad_s=self.cfg.window_pad_s)
        return str(text)

    def transcribe_all(self, pcms: list[bytes]) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="bare") as pool:
            return list(pool.map(self.transcribe, pcms))
