"""``stackwright bench speech``: accuracy, latency and throughput of the speech system, measured in one run.

Scenarios (each through the full path: client -> gateway -> ws-proxy -> stt-api, vosk protocol):

``wer``
    Every corpus clip streamed as fast as answers come (a stock vosk client), and the bare model (stt-api's
    engine and configuration, in the bench process, with the system idle) on the same audio: word error rate
    of both, and throughput (audio seconds per wall second) of both, measured two ways, block by block: one
    stream at a time against one decode at a time, and a replica's capacity of streams at once
    (``STT_MAX_STREAMS`` clients) against as many decodes at once as stt-api runs (``STT_DECODE_WORKERS``).
    The all-at-once comparison runs twice: with everything on the same CPUs, and with the recognizer on CPUs
    of its own (stt-api and the bare model on one half of the usable CPUs, the edge, relays, queue, databases
    and client on the other), as on EKS, where stt-api has its GPU nodes to itself. The target, total
    throughput through the system >= 0.9 x the bare model's, is read from the second: what the service costs
    the recognizer, not what the load generator and the ALB's stand-in cost a two-CPU machine (the first
    reading, printed beside it with every process' CPU seconds). One stream at a time shows a single
    stream's overhead (the decoder idles while a stream's handshake and frames are relayed).
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
import math
import os
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
BLOCK = 16  # clips per block of the wer scenario (2 blocks: the two sides of a ratio never far apart in time)
# Passes over the corpus with the recognizer on CPUs of its own (SpeechBench._isolated): this machine's speed
# wanders by 10-20% over tens of seconds (the same decodes' CPU seconds, round to round), so more rounds.
ISOLATED_ROUNDS = 3




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
        """The corpus in blocks of ``BLOCK`` clips, each block through the system and then the bare model twice:
        one stream at a time (each clip through the system, then bare), and all at once (the block with
        ``max_streams`` clients at a time, a replica's capacity, then bare with as many clips at a time as
        stt-api decodes). Both sides of a comparison see the same neighbours (measured one after the other, a
        change in the machine's load between them moved the ratio by more than the system's own cost). Wall
        time of each, transcripts of each, and CPU seconds of every process in the system's passes (gateway,
        services, Redis, Postgres, this client) against the bare model's."""
        kit = self.kit
        clips = kit.load_corpus()
        audio_s = sum(c.seconds for c in clips)
        stt = _stats_doc(str(self.state["services"]["stt-api"][0]["url"]))
        streams = int(stt["max_streams"])
        tokens = [self.idp.mint(f"bench-wer-{i}", [], ttl_s=86400) for i in range(streams)]
        bare = kit.BareModel(dict(self.system.services["stt-api"].env))
        self.say.phase(f"wer: {len(clips)} clips ({audio_s:.0f} s) in blocks of {BLOCK}, through the system and "
                       f"then the bare model: one stream at a time, then {streams} at once")
        groups = self._all_groups()
        one, total = _Pass(groups), _Pass(groups)
        results: list[Any] = []
        direct: list[str] = []
        together: list[Any] = []
        direct_together: list[str] = []
        for first in range(0, len(clips), BLOCK):
            block = clips[first:first + BLOCK]
            for clip in block:
                results.append(one.system(lambda c=clip: asyncio.run(kit.stream(self.ws_url, c.pcm, token=tokens[0]))))
                direct.append(one.bare(lambda c=clip: bare.transcribe(c.pcm)))
            together += total.system(lambda b=block: asyncio.run(self._all_at_once(b, tokens)))
            direct_together += total.bare(lambda b=block: bare.transcribe_all([c.pcm for c in b]))
        own_cpus = self._isolated(clips, tokens, bare)
        pairs = list(zip(clips, results, direct, strict=True))
        return {
            "clips": len(clips), "audio_s": round(audio_s, 2), "block": BLOCK,
            "wer_system": round(kit.wer([(c.text, r.text) for c, r, _ in pairs]), 4),
            "wer_direct": round(kit.wer([(c.text, d) for c, _, d in pairs]), 4),
            "wer_system_at_once": round(kit.wer([(c.text, r.text) for c, r in zip(clips, together, strict=True)]), 4),
            "identical": sum(r.text == d for _, r, d in pairs),
            "identical_at_once": sum(r.text == d for r, d in zip(together, direct_together, strict=True)),
            "closed_normally": sum(r.close_code == 1000 for r in results + together),
            "streams": len(results) + len(together),
            # One stream at a time: the decoder idles while each stream's handshake and frames are relayed.
            "system_wall_s": round(one.system_s, 2), "direct_wall_s": round(one.bare_s, 2),
            "throughput_ratio_one_stream": round(one.bare_s / one.system_s, 4),
            "cpu_s_system": one.cpu_system(), "cpu_s_system_total": round(sum(one.cpu_system().values()), 2),
            "cpu_s_direct": round(one.bare_cpu_s, 2),
            # All at once: the total throughput, the system with a replica full against the model at its own.
            "streams_at_once": streams, "decodes_at_once": bare.workers,
            "system_total_wall_s": round(total.system_s, 2), "direct_total_wall_s": round(total.bare_s, 2),
            "throughput_system_x_realtime": round(audio_s / total.system_s, 3),
            "throughput_direct_x_realtime": round(audio_s / total.bare_s, 3),
            "throughput_ratio": round(total.bare_s / total.system_s, 4),
            "cpu_s_system_at_once": total.cpu_system(),
            "cpu_s_system_at_once_total": round(sum(total.cpu_system().values()), 2),
            "cpu_s_direct_at_once": round(total.bare_cpu_s, 2),
            **own_cpus,
            "transcripts": [{"clip": c.name, "reference": c.text, "system": r.text, "direct": d,
                             "system_at_once": t.text, "direct_at_once": dt}
                            for (c, r, d), t, dt in zip(pairs, together, direct_together, strict=True)],
        }

    def _isolated(self, clips: list[Any], tokens: list[str], bare: Any) -> dict[str, Any]:
        """The all-at-once comparison again with the recognizer on CPUs of its own, as on EKS (stt-api alone on
        its GPU nodes; the edge is the ALB, ws-proxy and the updater run on cpu-nodes, Redis and Postgres are
        managed, the clients are elsewhere): stt-api and the bare model each get the upper half of the usable
        CPUs, everything else (gateway, ws-proxy, imp-backend-api, the updater, Redis, Postgres, the dashboard,
        `up`'s supervisor, the load generator's workers and this client) the rest. The audio still takes the
        full path, so what the relays do to the recognizer's throughput counts (a stream they hold up leaves a
        decoder idle); only their CPU is not taken from it.
        ``ISOLATED_ROUNDS`` passes over the corpus in blocks of ``BLOCK``, the order of the two sides
        alternating block by block. Empty when there are fewer than two usable CPUs."""
        from stackwright.bench import affinity, procs

        halves = affinity.split(affinity.usable())
        if halves is None:
            return {}
        own, rest = halves

        def alone() -> list[int]:
            return [self._pid("stt-api")]

        def others() -> list[int]:
            # The gateway, services, Redis, Postgres and its backends; the dashboard and the supervisor (`up`);
            # this bench's load-generator workers. The bench itself moves with each pass (pin_self).
            pids = [p for g in self._all_groups() if g.name != "stt-api" for p in g.pids()]
            pids += [int(v["pid"]) for k, v in self.state["processes"].items() if k != "stt-api"]
            pids += [int(self.state["runner_pid"])] if self.state.get("runner_pid") else []
            return sorted({*pids, *procs.children(os.getpid())})

        self.say.phase(f"wer: all at once again, stt-api and the bare model on CPU {affinity.describe(own)}, "
                       f"the rest on CPU {affinity.describe(rest)} ({ISOLATED_ROUNDS} rounds)")
        side = _Pass(self._all_groups())
        texts: list[Any] = []
        blocks = [clips[i:i + BLOCK] for _ in range(ISOLATED_ROUNDS) for i in range(0, len(clips), BLOCK)]

        def system(block: list[Any]) -> list[Any]:
            affinity.pin_self(rest)
            return side.system(lambda: asyncio.run(self._all_at_once(block, tokens)))

        def alone_bare(block: list[Any]) -> list[str]:
            affinity.pin_self(own)
            return side.bare(lambda: bare.transcribe_all([c.pcm for c in block]))

        ratios: list[float] = []
        with affinity.isolated(alone, others, own, rest):
            for n, block in enumerate(blocks):
                before = (side.system_s, side.bare_s)
                if n % 2:
                    alone_bare(block)
                    texts += system(block)
                else:
                    texts += system(block)
                    alone_bare(block)
                ratios.append(round((side.bare_s - before[1]) / (side.system_s - before[0]), 3))
        return {"own_cpus": affinity.describe(own), "rest_cpus": affinity.describe(rest),
                "own_rounds": ISOLATED_ROUNDS, "own_system_wall_s": round(side.system_s, 2),
                "own_direct_wall_s": round(side.bare_s, 2),
                "own_throughput_ratio": round(side.bare_s / side.system_s, 4), "own_block_ratios": ratios,
                "own_cpu_s_system": side.cpu_system(), "own_cpu_s_direct": round(side.bare_cpu_s, 2),
                "own_wer_system": round(self.kit.wer([(c.text, r.text) for c, r in
                                                      zip([c for b in blocks for c in b], texts, strict=True)]), 4)}

    async def _all_at_once(self, block: list[Any], tokens: list[str]) -> list[Any]:
        """``block`` through the system by ``len(tokens)`` clients (each its own user), each streaming its next
        clip as soon as its last one has closed; the results in the block's order."""
        queue = list(enumerate(block))
        out: list[Any] = [None] * len(block)

        async def client(token: str) -> None:
            while queue:
                i, clip = queue.pop(0)
                out[i] = await self.kit.stream(self.ws_url, clip.pcm, token=token)

        await asyncio.gather(*(client(t) for t in tokens))
        return out

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


class _Pass:
    """Wall and CPU time of one way of sending the corpus: the system's runs (CPU of every process in ``groups``
    and of this client) and the bare model's (this process' CPU)."""

    def __init__(self, groups: Any) -> None:
        self.groups = groups
        self.system_s = self.bare_s = self.bare_cpu_s = self.client_cpu_s = 0.0
        self.cpu: dict[str, float] = {}

    def system(self, run: Any) -> Any:
        from stackwright.bench import procs

        window = procs.CpuWindow(self.groups).start()
        me = time.process_time()
        out = run()
        # The last usage record is posted after the client has its answer; counted with the next run.
        self.system_s += time.monotonic() - window.began
        self.client_cpu_s += time.process_time() - me
        for name, used in window.stop().used_s.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + used
        return out

    def bare(self, run: Any) -> Any:
        began, me = time.monotonic(), time.process_time()
        out = run()
        self.bare_s += time.monotonic() - began
        self.bare_cpu_s += time.process_time() - me
        return out

    def cpu_system(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in {**self.cpu, "client": self.client_cpu_s}.items()}


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


def _stats_doc(url: str) -> dict[str, Any]:
    import httpx

    return dict(httpx.get(f"{url}/stats", timeout=10).json())


def _stats_of(url: str) -> dict[str, float]:
    return {k: float(v) for k, v in _stats_doc(url).items() if k.startswith(("final", "partial"))}


def _pct(sorted_values: list[float], q: float) -> float:
    # Nearest-rank percentile: with a few dozen samples p99 is the largest but none, honestly the tail.
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def _ratio(value: float) -> str:
    """A throughput ratio to three decimals, rounded down: one printed as 0.900 is never a miss (0.8996 printed
    as 0.90 was, once)."""
    return f"{math.floor(value * 1000) / 1000:.3f}"


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
        shared = (f"{_ratio(wer['throughput_ratio'])} with everything on the same CPUs "
                  f"({wer['throughput_system_x_realtime']:.2f}x vs {wer['throughput_direct_x_realtime']:.2f}x real "
                  f"time), {_ratio(wer['throughput_ratio_one_stream'])} one stream at a time")
        if "own_throughput_ratio" in wer:
            rows.append({"target": "total throughput through the system >= 0.9 x the bare model (the recognizer on "
                                   "CPUs of its own, as on EKS)",
                         "measured": f"{_ratio(wer['own_throughput_ratio'])} ({wer['streams_at_once']} streams vs "
                                     f"{wer['decodes_at_once']} decodes at once on CPU {wer['own_cpus']}, "
                                     f"{wer['own_rounds']} rounds: {wer['own_system_wall_s']:.1f} s vs "
                                     f"{wer['own_direct_wall_s']:.1f} s); {shared}",
                         "met": wer["own_throughput_ratio"] >= 0.9})
        else:  # one usable CPU: nothing to give the recognizer alone
            rows.append({"target": "total throughput through the system >= 0.9 x the bare model (one CPU: all "
                                   "on the same CPU)", "measured": shared, "met": wer["throughput_ratio"] >= 0.9})
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
        lines += ["", f"**wer** ({wer['clips']} espeak-ng clips, {wer['audio_s']:.0f} s of audio, frames sent as "
                      f"fast as answered, in blocks of {wer['block']} clips, each block through the system and "
                      f"then the bare model): WER system {wer['wer_system']:.3f}, bare model "
                      f"{wer['wer_direct']:.3f} ({wer['identical']}/{wer['clips']} transcripts identical one at a "
                      f"time, {wer['identical_at_once']}/{wer['clips']} all at once); {wer['closed_normally']}/"
                      f"{wer['streams']} streams closed 1000. **All at once** ({wer['streams_at_once']} streams "
                      f"through the system, a replica's capacity, vs {wer['decodes_at_once']} decodes at a time "
                      f"bare, as stt-api runs them): wall {wer['system_total_wall_s']:.1f} s vs "
                      f"{wer['direct_total_wall_s']:.1f} s (total throughput ratio {_ratio(wer['throughput_ratio'])}). "
                      f"**One at a time** (each clip through the system, then bare): wall "
                      f"{wer['system_wall_s']:.1f} s vs {wer['direct_wall_s']:.1f} s (ratio "
                      f"{_ratio(wer['throughput_ratio_one_stream'])})."]
        if "own_throughput_ratio" in wer:
            lines += ["", f"**All at once, the recognizer on CPUs of its own** (as on EKS: stt-api and the bare "
                          f"model on CPU {wer['own_cpus']}; the gateway, ws-proxy, imp-backend-api, the updater, "
                          f"Redis, Postgres and the client on CPU {wer['rest_cpus']}; {wer['own_rounds']} passes "
                          f"over the corpus, the two sides alternating block by block; stt-api's decoding threads "
                          f"and the bare model's are sized from the CPUs usable at start-up, "
                          f"{wer['decodes_at_once']} here, and share CPU {wer['own_cpus']}): wall "
                          f"{wer['own_system_wall_s']:.1f} s vs {wer['own_direct_wall_s']:.1f} s, total throughput "
                          f"ratio **{_ratio(wer['own_throughput_ratio'])}** (block by block "
                          f"{min(wer['own_block_ratios']):.2f}-{max(wer['own_block_ratios']):.2f}); WER through the "
                          f"system {wer['own_wer_system']:.3f}."]
        for label, key, bare_key in (("all at once", "cpu_s_system_at_once", "cpu_s_direct_at_once"),
                                     ("all at once, the recognizer on its own CPUs", "own_cpu_s_system",
                                      "own_cpu_s_direct"),
                                     ("one at a time", "cpu_s_system", "cpu_s_direct")):
            if key not in wer:
                continue
            lines += ["", f"CPU seconds for the whole corpus, {label}: through the system " + ", ".join(
                f"{k} {v}" for k, v in sorted(wer[key].items(), key=lambda kv: -kv[1]))
                + f" = {sum(wer[key].values()):.2f} in all; the bare model {wer[bare_key]}."]
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
