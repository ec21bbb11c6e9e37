"""Which model stt-api runs where: the spec's env picks tiny.en int8 on a CPU and Whisper base in float16 on a
GPU, and Whisper base (the GPU pool's model) really loads from its pinned packages and transcribes the
corpus. No GPU here, so the GPU side is the decision (``resolve``) plus the same model decoded on the CPU."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import speechkit as kit

from stackwright.spec import load_system

HERE = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine() -> ModuleType:
    return kit.load_engine("speech_stt_engine_models")


@pytest.fixture(scope="module")
def spec_env() -> dict[str, str]:
    """stt-api's env as system.yaml sets it (what both the local run and the rendered ConfigMap get)."""
    return dict(load_system(HERE / "system.yaml").services["stt-api"].env)


def test_the_spec_runs_tiny_en_int8_on_a_cpu_and_base_float16_on_a_gpu(engine: ModuleType,
                                                                       spec_env: dict[str, str]) -> None:
    cfg = engine.EngineConfig.from_env(spec_env)
    cpu = engine.resolve(cfg, cuda_devices=0)
    assert (cpu.device, cpu.model, cpu.compute_type) == ("cpu", "bundled", "int8")
    gpu = engine.resolve(cfg, cuda_devices=1)
    assert (gpu.device, gpu.model, gpu.compute_type) == ("cuda", "base", "float16")
    assert gpu.model in engine.PACKAGED_MODELS  # in the image, nothing to download
    assert engine.resolve(gpu, cuda_devices=0) == gpu  # decided once: a resolved config stays as it is
    # A machine without GPUs: CTranslate2's own count decides auto here, and it sees none.
    assert engine.resolve(cfg).device == "cpu"
    # STT_DEVICE=cpu keeps the CPU model even where a GPU is visible.
    forced = engine.resolve(engine.EngineConfig.from_env({**spec_env, "STT_DEVICE": "cpu"}), cuda_devices=1)
    assert (forced.device, forced.model) == ("cpu", "bundled")


def test_whisper_base_loads_from_its_two_packages_and_transcribes_the_corpus() -> None:
    bare = kit.BareModel({"STT_MODEL": "base", "STT_DECODE_WORKERS": "1"})
    clips = kit.load_corpus(8)
    texts = [bare.transcribe(c.pcm) for c in clips]
    assert kit.wer([(c.text, t) for c, t in zip(clips, texts, strict=True)]) <= 0.15, texts


def test_parts_that_do_not_join_into_the_pinned_model_are_refused(engine: ModuleType,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BASE_MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="do not join into the pinned model"):
        engine.model_source("base")


def test_preloading_cublas_without_its_package_does_nothing(engine: ModuleType) -> None:
    # A CPU machine (or a CUDA base image) has no nvidia.cublas package: loading the model must not fail on it.
    # With the package (stt-api's image), the same call makes dlopen("libcublas.so.12") succeed: checked by
    # hand with nvidia-cublas-cu12 12.9.3.13 unpacked on PYTHONPATH (the wheel is ~580 MB, too big for CI).
    engine.preload_cublas()
