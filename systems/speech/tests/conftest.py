"""Bring the speech system up once per test session (real Postgres, Redis, the Whisper model in stt-api, every
service, the gateway) and hand tests a small client for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import system_up

from stackwright.spec import load_system

HERE = Path(__file__).resolve().parents[1]
SPEC = HERE / "system.yaml"
sys.path.insert(0, str(HERE))  # speechkit: the corpus, the vosk-protocol client, WER
sys.path.insert(0, str(HERE / "tests"))  # speech_harness: the handle on the running system

from speech_harness import Speech  # noqa: E402

pytest.importorskip("faster_whisper", reason="the speech system needs the `speech` extra (pip install -e '.[speech]')")

# Short limits so the hostile-input tests end in seconds (the defaults are 600 s and 30 s; 20 s still lets a
# clip play at a third of real time). Services inherit the environment of `stackwright up`; the spec's env
# block does not set these.
TEST_ENV = {"MAX_STREAM_S": "20", "IDLE_TIMEOUT_S": "3",
            # A usage record goes to the outbox after 2 tries of 1 s (default 5 of 5 s), so the test of an
            # imp-backend-api outage takes seconds.
            "USAGE_TRIES": "2", "USAGE_TIMEOUT_S": "1"}


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Speech]:
    root = tmp_path_factory.mktemp("state")
    # A short visibility timeout so usage held by a killed updater comes back in seconds, not 30 s.
    with system_up(SPEC, root, env=TEST_ENV, extra_args=["--visibility-timeout", "usage-updates=3"]) as state:
        yield Speech(load_system(SPEC), state, root)
