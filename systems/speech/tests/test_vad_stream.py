"""stt-api's streaming VAD (engine.SpeechProbs, speech_segments, StreamState's cuts) against faster-whisper's own
silero VAD on the corpus: no system needed, ~1 s."""

from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import speechkit as kit


@pytest.fixture(scope="module")
def engine() -> ModuleType:
    return kit.load_engine("speech_stt_engine_vad")


def _audio(n: int) -> list[np.ndarray]:
    # Each clip with a second of silence after it, as a live stream has between utterances.
    return [np.concatenate([np.frombuffer(c.pcm, dtype="<i2").astype(np.float32) / 32768,
                            np.zeros(16000, np.float32)]) for c in kit.load_corpus(n)]


def test_scoring_in_pieces_with_carried_state_equals_scoring_the_whole(engine: ModuleType) -> None:
    from faster_whisper.vad import get_vad_model

    audio = np.concatenate(_audio(2))
    whole = get_vad_model()(np.pad(audio, (0, -len(audio) % 512))).reshape(-1)
    probs = engine.SpeechProbs()
    for piece in np.array_split(audio, [3000, 3200, 9600, 16000, 40000, 40100]):  # uneven, some under a chunk
        probs.add(piece)
        batch = probs.take()
        if batch is not None:
            probs.score(batch)
    probs.score(probs.take(flush=True))
    assert probs.scored == len(whole) * 512
    assert np.array_equal(np.asarray(probs.probs, dtype=np.float32), whole)


@pytest.mark.parametrize("options", [{"min_silence_duration_ms": 100, "speech_pad_ms": 100}, {}])
def test_segments_from_the_stream_probabilities_equal_get_speech_timestamps(engine: ModuleType,
                                                                          options: dict[str, Any]) -> None:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(**options)
    for audio in _audio(4):
        audio = audio[: len(audio) - 100]  # not a whole number of chunks: the last one is zero-padded
        probs = engine.SpeechProbs()
        probs.add(audio)
        probs.score(probs.take(flush=True))
        expected = get_speech_timestamps(audio, opts)
        assert expected  # the clip has speech
        assert engine.speech_segments(probs.probs, 0, len(audio), opts) == expected


def _decoder(engine: ModuleType) -> Any:
    """A Decoder with the real VAD whose finals say how much audio they got (no model, no partials)."""

    class Decoder(engine.Decoder):  # type: ignore[name-defined,misc]
        @property
        def idle(self) -> bool:
            return False

        async def final(self, audio: np.ndarray) -> tuple[str, list[dict[str, Any]]]:
            return str(len(audio)), []

    return Decoder(None, engine.EngineConfig(cpu_threads=1))


def _cuts(engine: ModuleType, pcm: bytes, *, live: bool, outrun: bool = False,
          stats: dict[str, Any] | None = None) -> list[int]:
    """Feed ``pcm`` frame by frame, live or as fast as a file, then the eof: the length of each final's audio.
    Each VAD look is awaited before the next frame, unless ``outrun`` (a file's frames keep coming meanwhile).
    ``stats`` gets the decoder's counters (``vad_checks``: VAD looks)."""

    async def run() -> list[int]:
        decoder = _decoder(engine)
        if stats is not None:
            stats.update(decoder.stats)
            decoder.stats = stats
        state = engine.StreamState(decoder)
        if live:
            state.started = time.monotonic() - 3600  # the audio is never ahead of the clock
        for offset in range(0, len(pcm), kit.FRAME_BYTES):
            state.feed(pcm[offset:offset + kit.FRAME_BYTES])
            if outrun:
                await asyncio.sleep(0.0005)
            elif state.vad_task is not None:
                await state.vad_task
        result = await state.finish()
        return [int(n) for n in result["text"].split()]

    return asyncio.run(run())


def test_a_live_stream_is_cut_after_each_utterance(engine: ModuleType) -> None:
    """Two clips with 1 s of silence after each: one cut per clip at most 0.5 s after its end (a clip ends
    ~0.25 s after its speech)."""
    clips = kit.load_corpus(2)
    cuts = _cuts(engine, b"".join(c.pcm + bytes(32000) for c in clips), live=True)
    first = len(clips[0].pcm) // 2
    assert len(cuts) == 2
    assert first - 8000 <= cuts[0] <= first + 8000
    assert cuts[0] + 16000 - 8000 <= sum(cuts) <= cuts[0] + 16000 + len(clips[1].pcm) // 2 + 8000


def test_a_short_file_is_one_utterance_cut_at_the_eof(engine: ModuleType) -> None:
    """Sent faster than real time and shorter than MAX_UTTERANCE_S: no VAD look, one final of all of it at the
    eof, as the bare model decodes a clip whole."""
    clips = kit.load_corpus(2)
    pcm = b"".join(c.pcm + bytes(32000) for c in clips)
    stats: dict[str, Any] = {}
    assert _cuts(engine, pcm, live=False, stats=stats) == [len(pcm) // 2]
    # Not even in its first frames, which come within LIVE_LEAD_S of the clock as a microphone's do: one look
    # there used to make the eof run VAD over the whole file.
    assert stats["vad_checks"] == 0


@pytest.mark.parametrize("outrun", [False, True])
def test_a_long_file_is_cut_in_pauses(engine: ModuleType, outrun: bool) -> None:
    """Clips with 1 s of silence after each, ~26 s in all, as fast as a file (its frames outrunning VAD's looks
    or not): every cut falls in a pause between clips, none at MAX_UTTERANCE_S in the middle of a word, and
    nothing is lost."""
    clips = kit.load_corpus(6)
    pcm = b"".join(c.pcm + bytes(32000) for c in clips)
    cuts = _cuts(engine, pcm, live=False, outrun=outrun)
    assert len(cuts) >= 2 and sum(cuts) == len(pcm) // 2
    ends = [sum(len(c.pcm) // 2 + 16000 for c in clips[:k]) + len(clips[k].pcm) // 2 for k in range(len(clips))]
    at = 0
    for cut in cuts[:-1]:
        at += cut
        assert any(end - 8000 <= at <= end + 16000 for end in ends), (cuts, ends)


def test_a_silent_file_is_not_decoded(engine: ModuleType) -> None:
    assert _cuts(engine, bytes(5 * 32000), live=False) == []
    assert _cuts(engine, bytes(45 * 32000), live=False, outrun=True) == []  # longer than MAX_UTTERANCE_S
    assert engine.silent(np.zeros(1000, np.float32))
    loud = np.frombuffer(kit.load_corpus(1)[0].pcm, dtype="<i2").astype(np.float32) / 32768
    assert not engine.silent(loud)
    peak = int(np.argmax(np.abs(loud)))
    assert not engine.silent(np.concatenate([np.zeros(16000, np.float32), loud[peak:peak + 300]]))  # ragged end


def test_the_model_decodes_beside_one_blas_thread(engine: ModuleType) -> None:
    """Loading the model holds numpy's BLAS to one thread: its extra threads busy-wait between calls, taking CPU
    from the decodes that already run side by side (and a decode's numbers would depend on the CPU count)."""
    from threadpoolctl import threadpool_info

    engine.load_model(engine.EngineConfig(workers=1))
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and set(blas) == {1}
