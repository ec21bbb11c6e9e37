"""``stackwright bench speech``: accuracy, latency and throughput of the speech system, measured in one run.

Scenarios (each through the full path: client -> gateway -> ws-proxy -> stt-api, vosk protocol):

``wer``
    Every corpus clip streamed as fast as answers come (a stock vosk client), one stream at a time, then
    the bare model (same decode call, same threads, in the bench process, with the system idle) on the same
    audio: word error rate of both, and throughput (audio seconds per wall second) of both; the target is
    the system's throughput >= 0.9 x the bare model's.
``latency``
    N concurrent real-time streams (N = 1..4), each playing clips followed by 2 s of silence: end of speech
    (the last speech frame sent) -> the final text arriving, p50/p99 per N, and the largest N with
    p99 <= the spec's ``slo.latency_p99_ms``.
``idle_sockets``
    1,000 clients (each its own user) open ``/asr`` through the gateway, send a config and then nothing:
    how many the edge admits (``max_connections`` per ws-proxy replica) and refuses, how they are closed
    (ws-proxy's ``IDLE_TIMEOUT_S``: 1001), and ws-proxy's and the gateway's memory (VmRSS) before, while
    they are open, and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

from stackwright.bench.harness import BenchOptions, Reporter, SystemBench
from stackwright.bench.loadgen import RequestSource
from stackwright.plugins import load_helper

SCENARIOS = ("wer", "latency", "idle_sockets")
IDLE_SOCKETS = 1000
LATENCY_STREAMS = (1, 2, 3, 4)
CLIPS_PER_STREAM = 4
TRAILING_SILENCE_S = 2.0




def run(spec_path: Path, options: BenchOptions, reporter: Reporter) -> dict[str, Any]:
    """The plug-in entry point: one benchmark run of the speech system, as a results document."""
    return SpeechBench(spec_path, options, reporter).run()


class SpeechBench(SystemBench):
    """The speech scenarios; no HTTP rate search (streams, not requests, are what this system serves)."""

    SCENARIOS = SCENARIOS
    CLIENTS = "one dev token per stream user"

    def baseline_source(self) -> RequestSource:
        raise NotImplementedError("the speech bench has no HTTP baseline: the bare model is its baseline")

    def scenarios(self) -> None:
        kit = load_helper(__file__, "speechkit")
        self.kit = kit
        self.ws_url = kit.asr_url(self.state)
        self.idp = self._idp()
        if "wer" in self.opt.only:
            self.results["wer"] = self._wer()
        if "latency" in self.opt.only:
            self.results["latency"] = self._latency()
        if "idle_sockets" in self.opt.only:
            self.results["idle_sockets"] = self._idle_sockets()

    def _stt_stats(self) -> dict[str, float]:
        """stt-api's counters (``GET /stats``): finals, final_wait_s, final_decode_s, partials, ..."""
        return _stats_of(str(self.state["services"]["stt-api"][0]["url"]))

    def _rss_mib(self) -> dict[str, float | None]:
        from stackwright.bench import procs

        pids = {"ws-proxy": self._pid("ws-proxy"), "gateway": self._group("gateway").pid}
        out: dict[str, float | None] = {}
        for name, pid in pids.items():
            kib = procs.status_kib(pid, "VmRSS")
            out[name] = round(kib / 1024, 1) if kib is not None else None
        return out

    def _idle_sockets(self) -> dict[str, Any]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        self.say.phase(f"idle_sockets: {IDLE_SOCKETS} sockets that send a config and then nothing")
        tokens = [self.idp.mint(f"bench-idle-{i}", [], ttl_s=3600) for i in range(IDLE_SOCKETS)]
        before = self._rss_mib()
        outcome: dict[str, Any] = {"sockets": IDLE_SOCKETS, "rss_mib_before": before}

        async def scenario() -> dict[str, Any]:
            codes: dict[str, int] = {}
            gate = asyncio.Semaphore(100)  # connect 100 at a time: a burst, not a SYN flood from one process

            async def one(token: str) -> Any:
                async with gate:
                    try:
                        ws = await connect(f"{self.ws_url}?access_token={token}", proxy=None, open_timeout=30,
                                           **self.kit.dial(self.ws_url))
                    except InvalidStatus as exc:
                        return exc.response.status_code
                    except (OSError, TimeoutError):
                        return "connect error"
                await ws.send('{"config": {"sample_rate": 16000}}')
                return ws

            began = time.monotonic()
            opened = await asyncio.gather(*(one(t) for t in tokens))
            held = [ws for ws in opened if not isinstance(ws, int | str)]
            for o in opened:
                if isinstance(o, int | str):
                    codes[f"handshake {o}"] = codes.get(f"handshake {o}", 0) + 1
            await asyncio.sleep(2)
            during = self._rss_mib()

            async def wait_close(ws: Any) -> None:
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    await asyncio.wait_for(ws.recv(), 120)
                key = f"closed {ws.close_code}"
                codes[key] = codes.get(key, 0) + 1

            await asyncio.gather(*(wait_close(ws) for ws in held))
            return {"accepted": len(held), "outcomes": codes, "rss_mib_while_open": during,
                    "all_closed_s": round(time.monotonic() - began, 1)}

        outcome.update(asyncio.run(scenario()))
        time.sleep(2)
        outcome["rss_mib_after"] = self._rss_mib()
        return outcome

    def _wer(self) -> dict[str, Any]:
        """Each clip through the system and then through the bare model, in turn: both passes see the same
        neighbours (measured one after the other, a change in the machine's load between them moved the ratio
        by more than the system's own cost). Wall time of both, and CPU seconds of every process in the
        system's passes (gateway, services, Redis, Postgres, this client) against the bare model's."""
        from stackwright.bench import procs

        kit = self.kit
        clips = kit.load_corpus()
        audio_s = sum(c.seconds for c in clips)
        token = self.idp.mint("bench-wer", [], ttl_s=86400)
        self.say.phase(f"wer: {len(clips)} clips ({audio_s:.0f} s), each through the system and then the bare model")
        transcribe = kit.direct_model(cpu_threads=2)
        groups = self._all_groups()
        system_s = direct_s = 0.0
        system_cpu: dict[str, float] = {}
        client_cpu = direct_cpu = 0.0
        results: list[Any] = []
        direct: list[str] = []
        for clip in clips:
            window = procs.CpuWindow(groups).start()
            me = time.process_time()
            results.append(asyncio.run(kit.stream(self.ws_url, clip.pcm, token=token)))
            # The last usage record is posted after the client has its answer; counted with the next clip's.
            system_s += time.monotonic() - window.began
            client_cpu += time.process_time() - me
            for name, used in window.stop().used_s.items():
                system_cpu[name] = system_cpu.get(name, 0.0) + used
            began, me = time.monotonic(), time.process_time()
            direct.append(transcribe(clip.pcm))
            direct_s += time.monotonic() - began
            direct_cpu += time.process_time() - me
        system_cpu["client"] = client_cpu
        return {
            "clips": len(clips), "audio_s": round(audio_s, 2),
            "wer_system": round(kit.wer([(c.text, r.text) for c, r in zip(clips, results, strict=True)]), 4),
            "wer_direct": round(kit.wer([(c.text, d) for c, d in zip(clips, direct, strict=True)]), 4),
            "identical": sum(r.text == d for r, d in zip(results, direct, strict=True)),
            "closed_normally": sum(r.close_code == 1000 for r in results),
            "system_wall_s": round(system_s, 2), "direct_wall_s": round(direct_s, 2),
            "throughput_system_x_realtime": round(audio_s / system_s, 3),
            "throughput_direct_x_realtime": round(audio_s / direct_s, 3),
            "throughput_ratio": round(direct_s / system_s, 3),
            "cpu_s_system": {k: round(v, 2) for k, v in system_cpu.items()},
            "cpu_s_system_total": round(sum(system_cpu.values()), 2), "cpu_s_direct": round(direct_cpu, 2),
            "transcripts": [{"clip": c.name, "reference": c.text, "system": r.text, "direct": d}
                            for c, r, d in zip(clips, results, direct, strict=True)],
        }

    def _latency(self) -> dict[str, Any]:
        kit = self.kit
        clips = kit.load_corpus()
        slo_s = self.system.slo.latency_p99_ms / 1000
        out: dict[str, Any] = {"slo_p99_s": slo_s, "trailing_silence_s": TRAILING_SILENCE_S, "by_streams": {}}
        for n in LATENCY_STREAMS:
            self.say.phase(f"latency: {n} concurrent real-time stream(s), {CLIPS_PER_STREAM} clips each")

            async def one(i: int, n: int = n) -> list[float]:
                token = self.idp.mint(f"bench-lat-{n}-{i}", [], ttl_s=86400)
                got: list[float] = []
                for k in range(CLIPS_PER_STREAM):
                    clip = clips[(i * CLIPS_PER_STREAM + k) % len(clips)]
                    r = await kit.stream(self.ws_url, clip.pcm, token=token, realtime=True,
                                         trailing_silence_s=TRAILING_SILENCE_S)
                    if r.final_at is not None and r.speech_end_at is not None:
                        got.append(r.final_at - r.speech_end_at)
                return got

            async def all_streams(n: int = n) -> list[list[float]]:
                return await asyncio.gather(*(one(i) for i in range(n)))

            before = self._stt_stats()
            samples = sorted(x for per in asyncio.run(all_streams()) for x in per)
            spent = {k: v - before.get(k, 0) for k, v in self._stt_stats().items()}
            finals = int(spent.get("finals") or 0)  # decodes, those started at a pause that went on included
            cuts = len(samples)
            row = {"streams": n, "finals": len(samples),
                   "p50_s": round(statistics.median(samples), 3) if samples else None,
                   "p99_s": round(_pct(samples, 0.99), 3) if samples else None,
                   "max_s": round(samples[-1], 3) if samples else None,
                   # stt-api's own account of the same finals (means): the silence the endpointer waited for
                   # after the speech, queued behind other decodes, decoding, from the cut to the text (the
                   # decode starts at the speech's pause, so it overlaps the endpointer's wait), and ready until
                   # the client's next frame took it.
                   "decoded_finals": finals, "utterances": cuts,
                   "finals_early": int(spent.get("finals_early") or 0),
                   "endpoint_mean_s": _mean(spent, "final_endpoint_s", cuts),
                   "final_wait_mean_s": _mean(spent, "final_wait_s", finals),
                   "final_decode_mean_s": _mean(spent, "final_decode_s", finals),
                   "after_cut_mean_s": _mean(spent, "final_after_cut_s", cuts),
                   "deliver_mean_s": _mean(spent, "final_deliver_s", cuts),
                   "partials": int(spent.get("partials") or 0),
                   "partials_dropped": int(spent.get("partials_dropped") or 0),
                   "partial_decode_mean_s": round(spent["partial_decode_s"] / spent["partials"], 3)
                   if spent.get("partials") else None}
            out["by_streams"][str(n)] = row
        out["max_streams_within_slo"] = largest_streams_within(out["by_streams"], slo_s)
        return out


def largest_streams_within(by_streams: dict[str, dict[str, Any]], slo_s: float) -> int:
    """The largest N such that N concurrent streams and every smaller count measured kept p99 <= ``slo_s``
    seconds; 0 when one stream did not. ``by_streams`` maps N (as text) to a row with ``p99_s`` (None when the
    step had no finals, which counts as a miss). A larger N meeting the SLO after a smaller one missed it is
    noise, not capacity, so it does not count."""
    largest = 0
    for n in sorted(int(k) for k in by_streams):
        p99 = by_streams[str(n)]["p99_s"]
        if p99 is None or p99 > slo_s:
            break
        largest = n
    return largest


def _mean(spent: dict[str, float], key: str, n: int) -> float | None:
    return round(spent[key] / n, 3) if n and key in spent else None


def _stats_of(url: str) -> dict[str, float]:
    import httpx

    doc = httpx.get(f"{url}/stats", timeout=10).json()
    return {k: float(v) for k, v in doc.items() if k.startswith(("final", "partial"))}


def _pct(sorted_values: list[float], q: float) -> float:
    # Nearest-rank percentile: with a few dozen samples p99 is the largest but none, honestly the tail.
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, measured."""
    rows: list[dict[str, Any]] = []
    wer = doc["scenarios"].get("wer")
    if wer:
        rows.append({"target": "WER <= 0.15 through the full path", "measured": f"{wer['wer_system']:.3f} "
                     f"({wer['clips']} clips; bare model {wer['wer_direct']:.3f})", "met": wer["wer_system"] <= 0.15})
        rows.append({"target": "WER through the system equal to the bare model's (within 0.01)",
                     "measured": f"{wer['wer_system']:.3f} vs {wer['wer_direct']:.3f}",
                     "met": abs(wer["wer_system"] - wer["wer_direct"]) <= 0.01})
        rows.append({"target": "throughput through the system >= 0.9 x the bare model",
                     "measured": f"{wer['throughput_system_x_realtime']:.2f}x vs "
                                 f"{wer['throughput_direct_x_realtime']:.2f}x real time = "
                                 f"{wer['throughput_ratio']:.2f}",
                     "met": wer["throughput_ratio"] >= 0.9})
    lat = doc["scenarios"].get("latency")
    if lat:
        rows.append({"target": f"end of speech -> final p99 <= {lat['slo_p99_s']:g} s: largest N concurrent streams",
                     "measured": f"N = {lat['max_streams_within_slo']}", "met": lat["max_streams_within_slo"] >= 1})
    return rows


def markdown(doc: dict[str, Any]) -> list[str]:
    """The speech scenarios' own lines in RESULTS.md."""
    lines: list[str] = []
    wer = doc["scenarios"].get("wer")
    if wer:
        lines += ["", f"**wer** ({wer['clips']} espeak-ng clips, {wer['audio_s']:.0f} s of audio, one stream at a "
                      f"time, frames sent as fast as answered): WER system {wer['wer_system']:.3f}, bare model "
                      f"{wer['wer_direct']:.3f} ({wer.get('identical', '?')}/{wer['clips']} transcripts identical); "
                      f"{wer['closed_normally']}/{wer['clips']} streams closed 1000; each clip through the system "
                      f"and then bare, in turn: wall {wer['system_wall_s']:.1f} s through the system vs "
                      f"{wer['direct_wall_s']:.1f} s bare (throughput ratio {wer['throughput_ratio']:.2f})."]
        if wer.get("cpu_s_system"):
            lines += ["", "CPU seconds for the whole corpus: through the system " + ", ".join(
                f"{k} {v}" for k, v in sorted(wer["cpu_s_system"].items(), key=lambda kv: -kv[1]))
                + f" = {wer['cpu_s_system_total']} in all; the bare model {wer['cpu_s_direct']}."]
    lat = doc["scenarios"].get("latency")
    if lat:
        lines += ["", f"**latency** (end of speech -> final text at the client; real-time streams, "
                      f"{TRAILING_SILENCE_S:g} s of silence after each clip). stt-api's means per final: the silence "
                      "VAD waited for after the speech (endpoint), queued behind other decodes, decoding, from the "
                      "cut to the text (the decode starts when the speech pauses, so it overlaps the endpoint), "
                      "ready until the client's next frame; finals whose decode started at the pause; partials "
                      "decoded and dropped as stale:", "",
                  "| concurrent streams | finals | p50 s | p99 s | max s | endpoint s | queued s | decode s "
                  "| after cut s | delivery s | decoded at the pause | partials (dropped) | partial decode s |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in lat["by_streams"].values():
            lines.append(f"| {row['streams']} | {row['finals']} | {row['p50_s']} | {row['p99_s']} | {row['max_s']} "
                         f"| {row.get('endpoint_mean_s')} | {row.get('final_wait_mean_s')} "
                         f"| {row.get('final_decode_mean_s')} | {row.get('after_cut_mean_s')} "
                         f"| {row.get('deliver_mean_s')} | {row.get('finals_early')} "
                         f"| {row.get('partials')} ({row.get('partials_dropped')}) "
                         f"| {row.get('partial_decode_mean_s')} |")
    idle = doc["scenarios"].get("idle_sockets")
    if idle:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(idle["outcomes"].items()))
        lines += ["", f"**idle_sockets** ({idle['sockets']} sockets through the gateway, a config and then silence): "
                      f"{idle['accepted']} accepted; {outcomes}; all closed after {idle['all_closed_s']} s. "
                      f"VmRSS MiB before / while open / after: " + "; ".join(
                          f"{k} {idle['rss_mib_before'].get(k)} / {idle['rss_mib_while_open'].get(k)} / "
                          f"{idle['rss_mib_after'].get(k)}" for k in idle["rss_mib_before"]) + "."]
    return lines


def summary(doc: dict[str, Any]) -> list[str]:
    """The scenarios' lines for the console (the same as in RESULTS.md), so a ``--no-write`` run shows its tables."""
    return markdown(doc)
