"""The speech system end to end: audio through the gateway, ws-proxy and stt-api, transcripts in vosk's
protocol, accuracy equal to the bare model, usage counted exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import httpx
import pytest
import speechkit as kit
from speech_harness import Speech

pytestmark = pytest.mark.integration

# Clips streamed in CI: the full 32-clip corpus runs in bench.py.
CLIPS = kit.load_corpus()[1:6]


@pytest.fixture(scope="module")
def direct() -> dict[str, str]:
    """The bare model's text of each test clip (stt-api's engine and defaults, in this process; as many clips at
    a time as stt-api decodes)."""
    bare = kit.BareModel()
    return dict(zip([c.name for c in CLIPS], bare.transcribe_all([c.pcm for c in CLIPS]), strict=True))


def test_corpus_streams_through_the_gateway_as_accurately_as_the_bare_model(speech: Speech,
                                                                           direct: dict[str, str]) -> None:
    async def run() -> list[kit.StreamResult]:
        return [await kit.stream(speech.ws_url, c.pcm, token=speech.token("wer-user")) for c in CLIPS]

    results = asyncio.run(run())
    for clip, result in zip(CLIPS, results, strict=True):
        assert result.close_code == 1000, (clip.name, result.close_code, result.close_reason)
        # vosk answers every frame once: one answer per 0.2 s frame plus the eof answer.
        assert len(result.partials) + len(result.finals) == -(-len(clip.pcm) // kit.FRAME_BYTES) + 1
        words = [w for f in result.finals for w in f["result"]]
        assert words and all(set(w) == {"conf", "end", "start", "word"} for w in words)
        assert all(0 <= w["start"] <= w["end"] <= clip.seconds + 0.5 for w in words)
        assert result.text == " ".join(w["word"] for w in words)
    system_wer = kit.wer([(c.text, r.text) for c, r in zip(CLIPS, results, strict=True)])
    direct_wer = kit.wer([(c.text, direct[c.name]) for c in CLIPS])
    print(f"WER through the system {system_wer:.3f}, bare model {direct_wer:.3f}")
    assert system_wer <= 0.15
    assert system_wer <= direct_wer + 0.02


def test_streams_at_once_are_decoded_side_by_side_as_accurately(speech: Speech, direct: dict[str, str]) -> None:
    """As many streams as a replica takes, at once (each its own user): stt-api decodes several at a time
    (STT_DECODE_WORKERS), and every text is the one the bare model gives that clip alone."""
    clips = CLIPS[:4]

    async def run() -> list[kit.StreamResult]:
        return list(await asyncio.gather(*(kit.stream(speech.ws_url, c.pcm, token=speech.token(f"side-{i}"))
                                           for i, c in enumerate(clips))))

    results = asyncio.run(run())
    assert [r.close_code for r in results] == [1000] * len(clips)
    assert [r.text for r in results] == [direct[c.name] for c in clips]
    stats = httpx.get(speech.service_url("stt-api") + "/stats", timeout=10).json()
    assert stats["max_streams"] >= len(clips)
    assert stats["decodes_at_once_max"] >= min(2, stats["workers"])  # side by side, not one after another


def test_live_stream_gets_partials_before_the_final(speech: Speech) -> None:
    clip = CLIPS[0]
    stats = speech.service_url("stt-api") + "/stats"
    before = httpx.get(stats, timeout=10).json()
    # Played at a third of real time (still live: audio never ahead of the clock), so the first partial is
    # back before the speech ends even when a busy machine takes several seconds per decode.
    result = asyncio.run(kit.stream(speech.ws_url, clip.pcm, token=speech.token("rt-user"), realtime=True,
                                    speed=1 / 3, trailing_silence_s=1.0))
    after = httpx.get(stats, timeout=10).json()
    # The final's decode started when VAD saw the speech pause, and the cut 0.5 s of silence later adopted it
    # (live streams only): the decode overlaps the endpointer's wait instead of following it.
    assert after["finals_early"] - before["finals_early"] >= 1
    assert after["final_endpoint_s"] - before["final_endpoint_s"] >= 0.5
    assert result.close_code == 1000
    spoken = [p for p in result.partials if p]
    assert spoken, "no partial transcript while the audio played"
    assert kit.normalize(spoken[0])[0] == kit.normalize(clip.text)[0]
    assert kit.word_errors(clip.text, result.text)[0] <= 2


def test_usage_is_counted_once_per_session(speech: Speech) -> None:
    user = f"usage-{uuid.uuid4().hex[:6]}"
    clips = CLIPS[:2]

    async def run() -> None:
        for c in clips:
            r = await kit.stream(speech.ws_url, c.pcm, token=speech.token(user))
            assert r.close_code == 1000

    asyncio.run(run())
    expected_ms = sum(len(c.pcm) * 1000 // (2 * kit.SAMPLE_RATE) for c in clips)
    usage = speech.wait_until(lambda: (u := speech.usage(user))["sessions"] == 2 and u)
    assert abs(usage["audio_seconds"] * 1000 - expected_ms) <= 2  # whole ms per record
    # The same record again (a retried report, a redelivered message) changes nothing.
    session = usage["recent"][0]["session_id"]
    rows = speech.db_rows("SELECT seq, audio_ms, recorded_at FROM usage_records WHERE session_id = $1 ORDER BY seq",
                          session)
    backend = speech.service_url("imp-backend-api")
    for row in rows:
        resp = httpx.post(f"{backend}/internal/usage", json={
            "session_id": session, "seq": row["seq"], "user_id": user, "audio_ms": row["audio_ms"],
            "at": row["recorded_at"].timestamp()})
        assert resp.status_code == 202
    speech.wait_until(lambda: speech.db_rows("SELECT 1 FROM usage_records WHERE session_id = $1", session))
    asyncio.run(asyncio.sleep(2))  # the updater takes the duplicates within a second
    again = speech.usage(user)
    assert again["audio_seconds"] == usage["audio_seconds"]
    assert again["sessions"] == 2


def test_bad_usage_record_is_a_problem_not_a_crash(speech: Speech) -> None:
    resp = httpx.post(f"{speech.service_url('imp-backend-api')}/internal/usage",
                      json={"session_id": "x", "seq": 0, "user_id": "u", "audio_ms": -5, "at": 1})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_account_and_api_keys(speech: Speech) -> None:
    auth = {"authorization": f"Bearer {speech.token('key-owner')}"}
    assert speech.client.get("/account", headers=auth).json()["user_id"] == "key-owner"
    created = speech.client.post("/account/keys", json={"name": "laptop"}, headers=auth)
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith(key["prefix"])
    listed = speech.client.get("/account/keys", headers=auth).json()
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    assert speech.client.delete(f"/account/keys/{key['id']}", headers=auth).status_code == 204
    again = speech.client.delete(f"/account/keys/{key['id']}", headers=auth)
    assert again.status_code == 404
    assert speech.client.get("/account/keys").status_code == 401


def test_frontend_page_is_served(speech: Speech) -> None:
    page = speech.client.get("/", headers=speech.host("platform"))
    assert page.status_code == 200
    assert "/asr?access_token=" in page.text and "/account/usage" in page.text
    # The page calls its own origin: platform. routes /account (and /asr) too, the other names do not serve it.
    auth = {"authorization": f"Bearer {speech.token('page-user')}"}
    assert speech.client.get("/account/usage", headers={**auth, **speech.host("platform")}).status_code == 200
    assert speech.client.get("/", headers=speech.host("api")).status_code == 404
    assert speech.client.get("/account/usage", headers={**auth, **speech.host("api")}).status_code == 404


def test_api_key_opens_a_stream_until_it_is_revoked(speech: Speech) -> None:
    owner = f"key-streamer-{uuid.uuid4().hex[:6]}"
    auth = {"authorization": f"Bearer {speech.token(owner)}"}
    key = speech.client.post("/account/keys", json={"name": "cli"}, headers=auth).json()
    # At rest only the SHA-256: no column holds the key.
    stored = speech.db_rows("SELECT * FROM api_keys WHERE id = $1::uuid", key["id"])[0]
    assert stored["key_sha256"] == hashlib.sha256(key["key"].encode()).digest()
    assert key["key"] not in {str(v) for v in stored.values()}
    # Through the edge, as a stock vosk client connects: /asr declares `api_key_prefixes: [sk_]`, so the gateway
    # passes an sk_ credential on to ws-proxy, which verifies it (as on EKS, where the ALB verifies nothing).
    second = bytes(2 * kit.SAMPLE_RATE)  # one second of silence: usage is what counts here
    result = asyncio.run(kit.stream(speech.ws_url, second, token=key["key"]))
    assert result.close_code == 1000, result.close_reason
    usage = speech.wait_until(lambda: (u := speech.usage(owner))["sessions"] == 1 and u)
    assert usage["audio_seconds"] == 1.0  # charged to the key's owner

    async def status(credential: str | None, header: bool = False) -> int:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        url, headers = (speech.ws_url, {"authorization": f"Bearer {credential}"}) if header else \
            (f"{speech.ws_url}?access_token={credential}" if credential else speech.ws_url, None)
        try:
            async with connect(url, proxy=None, open_timeout=20, additional_headers=headers, **kit.dial(url)):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(status(key["key"], header=True)) == 101
    assert asyncio.run(status(key["key"][:-1] + ("A" if key["key"][-1] != "A" else "B"))) == 403  # forged
    assert asyncio.run(status("sk_")) == 403
    assert asyncio.run(status(None)) == 403  # no credential at all
    assert speech.client.delete(f"/account/keys/{key['id']}", headers=auth).status_code == 204
    assert asyncio.run(status(key["key"])) == 403  # the next handshake after the revocation
    assert asyncio.run(status(key["key"], header=True)) == 403
    # An sk_ credential is no way around the edge's token check on routes that do not declare API keys.
    headers = {"authorization": f"Bearer {key['key']}", **speech.host("backend")}
    assert speech.client.get("/account", headers=headers).status_code == 401
