"""Usage while imp-backend-api does not answer: ws-proxy keeps the records in Redis and sends them once it does,
so an outage delays usage and loses none (it used to drop a record after its last try)."""

from __future__ import annotations

import asyncio
import uuid

import psutil
import pytest
import redis
import speechkit as kit
from speech_harness import Speech

pytestmark = pytest.mark.integration


def test_usage_of_a_stream_made_while_imp_backend_api_is_down_is_counted_once_it_is_back(speech: Speech) -> None:
    user = f"outbox-{uuid.uuid4().hex[:6]}"
    clip = kit.load_corpus(1)[0]
    backend = psutil.Process(speech.pid("imp-backend-api"))
    outbox = redis.Redis.from_url(speech.state["backing"]["redis"]["url"])
    backend.suspend()  # alive but silent, as a hung or partitioned service is: every post times out
    try:
        result = asyncio.run(kit.stream(speech.ws_url, clip.pcm, token=speech.token(user)))
        assert result.close_code == 1000  # the stream itself does not need imp-backend-api
        kept = speech.wait_until(lambda: [e for e in outbox.lrange("usage:outbox", 0, -1) if user.encode() in e])
        assert kept
    finally:
        backend.resume()
    sent_ms = len(clip.pcm) * 1000 // (2 * kit.SAMPLE_RATE)
    usage = speech.wait_until(lambda: (u := speech.usage(user))["sessions"] == 1 and u)
    assert abs(usage["audio_seconds"] * 1000 - sent_ms) <= 2  # whole ms per record
    speech.wait_until(lambda: not [e for e in outbox.lrange("usage:outbox", 0, -1) if user.encode() in e])
