"""Bring the speech system up once per test session (real Postgres, Redis, the Whisper model in stt-api, every
service, the gateway) and hand tests a small client for it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackwright.local.control import start_detached, stop
from stackwright.local.ports import free_port
from stackwright.spec import load_system

HERE = Path(__file__).resolve().parents[1]
SPEC = HERE / "system.yaml"
sys.path.insert(0, str(HERE))  # speechkit: the corpus, the vosk-protocol client, WER
sys.path.insert(0, str(HERE / "tests"))  # speech_harness: the handle on the running system

from speech_harness import Speech  # noqa: E402

pytest.importorskip("faster_whisper", reason="the speech system needs the `speech` extra (pip install -e '.[speech]')")

# Short limits so the hostile-input tests end in seconds (the defaults are 600 s and 30 s; 20 s still lets a
# clip play at a third of real time). Services inherit the environment of `stackwright up`; the spec's env
# block does not set these two.
TEST_ENV = {"MAX_STREAM_S": "20", "IDLE_TIMEOUT_S": "3"}


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Speech]:
    root = tmp_path_factory.mktemp("state")
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    try:
        # A short visibility timeout so usage held by a killed updater comes back in seconds, not 30 s.
        state = start_detached(SPEC, port=free_port(), state_root=root, timeout_s=240,
                               extra_args=["--visibility-timeout", "usage-updates=3"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield Speech(load_system(SPEC), state, root)
    finally:
        stop("speech", root)
