"""`stackwright bench files`: throughput of the file platform against bare references on the same machine.

Scenarios (closed loop: one client, requests one after another; these are bandwidth and latency figures, not
the open-loop rate search of the voting benchmark):

- ``upload``: MB/s of 64 MiB uploads through the edge, and through a bare ASGI sink (uvicorn, same loop and
  HTTP parser, an app that reads the body and drops it); the target is edge >= 0.5 x sink. Both get the same
  request: a raw body, sent chunked, as the API's clients send it (``POST /files?name=``). The CPU seconds
  each process spends per upload are recorded too (the MiB/s on a shared machine depend on its load). A second
  reference, the same sink writing the body to a file and fsyncing it before its answer (``POST /durable``),
  shows the disk's ceiling for an upload that is durable before its 201, as the file service's are; it is
  reported beside the target, not instead of its baseline.
- ``download``: the same for 64 MiB downloads against a bare ASGI source (sends 1 MiB chunks from memory).
- ``small``: p50/p99 latency of 1 KiB downloads through the edge (sequential, after a warm-up).
- ``variants``: variants/s of image-processing (upload N photos, until Postgres records every variant) against
  its own Pillow steps (``services/image-processing/imaging.py``) called directly in this process on the same
  photos, one after another: what the service adds (queue, store, database) shows; target >= 0.8.
- ``rss``: one 1 GiB upload through the edge while the file service's resident memory is sampled every 20 ms;
  the target is a rise of < 64 MiB (the gateway's process, which streams the body on, is reported too).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

SCENARIOS = ("upload", "download", "small", "variants", "rss")
MiB = 1 << 20
BIG = 64 * MiB
REPEATS = 3
SMALL_REQUESTS = 300
PHOTOS = 8
#: The upload whose memory cost the ``rss`` scenario measures (the issue: < 64 MiB of file service RSS).
RSS_UPLOAD = 1 << 30

SINK_SOURCE = '''
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "POST":
        size = 0
        more = True
        # POST /durable: the same, but every byte goes to a file that is fsynced before the answer (the disk's
        # share of a durable upload: the ceiling of any upload that is on disk before its 201).
        fd = os.open(os.path.join(os.getcwd(), "durable.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC) \
            if scope["path"] == "/durable" else None
        while more:
            message = await receive()
            data = message.get("body", b"")
            size += len(data)
            more = message.get("more_body", False)
            if fd is not None and data:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
        if fd is not None:
            os.fsync(fd)
            os.close(fd)
        body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    chunk = b"\\x01" * (1 << 20)
    total = int(scope["query_string"] or b"0")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(total).encode())]})
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
'''


def _body(size: int) -> Any:
    block = hashlib.sha256(b"bench").digest() * (MiB // 32)

    def gen() -> Any:
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            sent += len(piece)
            yield piece

    return gen()


def _mbps(fn: Any, cpu: dict[str, Any] | None = None, into: dict[str, Any] | None = None) -> float:
    """Median MB/s (MiB/s) of REPEATS runs of ``fn()``, which moves BIG bytes.

    ``cpu``: name -> psutil.Process whose CPU seconds per run (user + system, all threads; median) go into
    ``into[name]``: unlike the MiB/s, they hardly depend on what else the machine is running.
    """
    rates = []
    spent: dict[str, list[float]] = {name: [] for name in cpu or {}}
    for _ in range(REPEATS):
        before = {name: sum(p.cpu_times()[:2]) for name, p in (cpu or {}).items()}
        began = time.perf_counter()
        fn()
        rates.append(BIG / MiB / (time.perf_counter() - began))
        for name, p in (cpu or {}).items():
            spent[name].append(sum(p.cpu_times()[:2]) - before[name])
    if into is not None:
        into.update({name: statistics.median(v) for name, v in spent.items()})
    return statistics.median(rates)


def _photos() -> list[bytes]:
    from PIL import Image

    out = []
    for i in range(PHOTOS):
        img = Image.effect_noise((2400, 1800), 40 + i).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def _imaging(system: Any) -> tuple[Any, list[Any], int]:
    """image-processing's own Pillow steps (``imaging.py``, loaded by path) and the spec's variants."""
    import importlib.util

    name = "files_bench_imaging"
    module = sys.modules.get(name)
    if module is None:
        path = Path(__file__).resolve().parent / "services" / "image-processing" / "imaging.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    env = system.services["image-processing"].env
    return module, module.parse_variants(env["VARIANTS"]), int(env["MAX_IMAGE_PIXELS"])


def _direct_variants(system: Any, photos: list[bytes]) -> float:
    """Variants/s of image-processing's Pillow steps (``render_variants``) called directly, one photo after
    another: the same decode, resampling and encoders as the service, without its queue, store and database."""
    imaging, specs, max_pixels = _imaging(system)
    began = time.perf_counter()
    made = sum(len(imaging.render_variants(data, specs, max_pixels=max_pixels)) for data in photos)
    return made / (time.perf_counter() - began)


def _wait_variants(db_url: str, ids: list[str], want: int, timeout_s: float = 300) -> None:
    """Until Postgres records ``want`` variants of the files ``ids``: one query per 50 ms (polling the API for
    each file would load the machine the worker runs on)."""
    import asyncio
    import uuid

    import asyncpg

    async def poll() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                n = await conn.fetchval("SELECT count(*) FROM variants WHERE file_id = ANY($1::uuid[])",
                                        [uuid.UUID(i) for i in ids])
                if n >= want:
                    return
                await asyncio.sleep(0.05)
            raise TimeoutError(f"{want} variants not recorded within {timeout_s:.0f}s")
        finally:
            await conn.close()

    asyncio.run(poll())


def run(spec_path: Path, options: Any, reporter: Any) -> dict[str, Any]:
    """Bring the system up on a private state folder, measure, bring it down; the results document."""
    from stackwright.bench import procs
    from stackwright.local.control import start_detached, stop
    from stackwright.local.idp import DevIdP
    from stackwright.local.ports import free_port
    from stackwright.spec import load_system

    chosen = tuple(getattr(options, "only", None) or SCENARIOS)
    started = datetime.now(UTC)
    began = time.monotonic()
    load_before = procs.load_average()
    machine = procs.machine()
    system = load_system(spec_path)
    root = Path(tempfile.mkdtemp(prefix="files-bench-"))
    scenarios: dict[str, Any] = {}
    sink_dir = root / "sink"
    sink_dir.mkdir()
    (sink_dir / "sink.py").write_text(SINK_SOURCE)
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "uvicorn", "sink:app", "--port", str(sink_port), "--loop", "uvloop",
                             "--http", "httptools", "--no-access-log", "--log-level", "warning"], cwd=sink_dir)
    reporter.phase("starting the system")
    state = start_detached(spec_path, port=free_port(), state_root=root, timeout_s=240)
    try:
        ident = system.edge.identity
        assert ident is not None
        idp = DevIdP(root / system.name / "idp-key.pem", issuer=ident.issuer, audience=ident.audience)
        auth = {"authorization": f"Bearer {idp.mint('bench-user', ttl_s=6 * 3600)}"}
        edge = httpx.Client(base_url=state["gateway"], timeout=600)
        bare = httpx.Client(base_url=f"http://127.0.0.1:{sink_port}", timeout=600)
        _wait_up(bare)
        if "upload" in chosen or "download" in chosen:
            reporter.phase("upload / download, 64 MiB each")
            ids: list[str] = []

            def up_edge() -> None:
                r = edge.post("/files", params={"name": "big.bin"}, content=_body(BIG), headers=auth)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])

            def up_sink() -> None:
                r = bare.post("/", content=_body(BIG))
                assert r.status_code == 201 and r.text == str(BIG)

            def up_durable() -> None:  # the disk's ceiling: the sink, writing and fsyncing what it gets
                r = bare.post("/durable", content=_body(BIG))
                assert r.status_code == 201 and r.text == str(BIG)

            # The file service alone (where the edge's share of the time shows), through a client kept open like
            # the others: a client per run (``httpx.post``) built an SSL context and a connection each time,
            # some 20 ms of each run that the edge and sink rows did not pay.
            direct = httpx.Client(base_url=state["services"]["file"][0]["url"], timeout=600)

            def up_direct() -> None:
                r = direct.post("/files", params={"name": "big.bin"}, content=_body(BIG), headers=auth)
                assert r.status_code == 201, r.text

            import psutil

            measured = {"file": psutil.Process(state["services"]["file"][0]["pid"]),
                     "gateway": _gateway_process(state), "sink": psutil.Process(sink.pid)}
            cpu: dict[str, dict[str, float]] = {"edge": {}, "direct": {}, "sink": {}, "durable": {}}
            up_rate = _mbps(up_edge, {k: measured[k] for k in ("gateway", "file")}, cpu["edge"])
            direct_rate = _mbps(up_direct, {"file": measured["file"]}, cpu["direct"])
            sink_rate = _mbps(up_sink, {"sink": measured["sink"]}, cpu["sink"])
            durable_rate = _mbps(up_durable, {"sink": measured["sink"]}, cpu["durable"])
            scenarios["upload"] = {"edge_mib_s": up_rate, "direct_mib_s": direct_rate, "sink_mib_s": sink_rate,
                                   "durable_sink_mib_s": durable_rate, "ratio": up_rate / sink_rate,
                                   "durable_ratio": up_rate / durable_rate, "cpu_s_per_upload": cpu}
            reporter.note(f"upload: edge {up_rate:.0f} MiB/s, file service directly {direct_rate:.0f} MiB/s, "
                          f"bare sink {sink_rate:.0f} MiB/s, bare sink writing + fsyncing {durable_rate:.0f} MiB/s")

            def down_edge() -> None:
                with edge.stream("GET", f"/files/{ids[0]}/content", headers=auth) as r:
                    assert r.status_code == 200
                    assert sum(len(c) for c in r.iter_raw()) == BIG

            def down_source() -> None:
                with bare.stream("GET", f"/?{BIG}") as r:
                    assert sum(len(c) for c in r.iter_raw()) == BIG

            def down_direct() -> None:
                with direct.stream("GET", f"/files/{ids[0]}/content", headers=auth) as r:
                    assert sum(len(c) for c in r.iter_raw()) == BIG

            dn_rate, dn_direct, src_rate = _mbps(down_edge), _mbps(down_direct), _mbps(down_source)
            scenarios["download"] = {"edge_mib_s": dn_rate, "direct_mib_s": dn_direct, "source_mib_s": src_rate,
                                     "ratio": dn_rate / src_rate}
            reporter.note(f"download: edge {dn_rate:.0f} MiB/s, file service directly {dn_direct:.0f} MiB/s, "
                          f"bare source {src_rate:.0f} MiB/s")
        if "small" in chosen:
            reporter.phase("small files, 1 KiB, sequential")
            # Ten users in turn, each with their own file: the edge limits each user to 50 requests/s, which
            # one sequential client would hit on its own.
            owners = []
            for n in range(10):
                who = {"authorization": f"Bearer {idp.mint(f'bench-small-{n}', ttl_s=6 * 3600)}"}
                small = edge.post("/files", params={"name": "small.txt"}, content=b"s" * 1024, headers=who).json()
                owners.append((f"/files/{small['id']}/content", who))
            for url, who in owners * 3:
                edge.get(url, headers=who)
            lat = []
            for i in range(SMALL_REQUESTS):
                url, who = owners[i % len(owners)]
                t = time.perf_counter()
                r = edge.get(url, headers=who)
                lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
            lat.sort()
            scenarios["small"] = {"requests": SMALL_REQUESTS, "p50_ms": lat[len(lat) // 2],
                                  "p99_ms": lat[int(len(lat) * 0.99) - 1]}
            reporter.note(f"small: p50 {lat[len(lat) // 2]:.1f} ms, p99 {scenarios['small']['p99_ms']:.1f} ms")
        if "variants" in chosen:
            reporter.phase(f"variants of {PHOTOS} photos 2400x1800")
            photos = _photos()
            direct = _direct_variants(system, photos)
            want = len(_imaging(system)[1]) * len(photos)
            t = time.perf_counter()
            made = [edge.post("/files", params={"name": f"p{i}.jpg"}, content=p, headers=auth).json()["id"]
                    for i, p in enumerate(photos)]
            _wait_variants(state["resources"]["db"], made, want)
            service = want / (time.perf_counter() - t)
            scenarios["variants"] = {"service_per_s": service, "pillow_per_s": direct, "ratio": service / direct,
                                     "photos": PHOTOS}
            reporter.note(f"variants: service {service:.2f}/s, Pillow directly {direct:.2f}/s")
        if "rss" in chosen:
            reporter.phase("1 GiB upload through the edge, file service RSS")
            scenarios["rss"] = _rss(edge, auth, state)
            reporter.note(f"rss: file service +{scenarios['rss']['file_growth_mib']:.1f} MiB, gateway "
                          f"+{scenarios['rss']['gateway_growth_mib']:.1f} MiB during a 1 GiB upload "
                          f"({scenarios['rss']['mib_s']:.0f} MiB/s)")
    finally:
        stop(system.name, root)
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    return {"system": system.name, "started_at": started.isoformat(timespec="seconds"), "machine": machine,
            "machine_line": procs.describe(machine),
            "load_generator": {"processes": 1, "kind": "closed loop, one httpx client in the bench process",
                               "clients": "dev-token users (one for the bandwidth runs, ten in turn for small "
                                          "files: the edge limits each to 50/s)"},
            "load_average_before": load_before, "load_average_after": procs.load_average(),
            "command": "stackwright bench files", "duration_s": time.monotonic() - began,
            "criteria": {"text": "each figure is the median of 3 runs (bandwidth) or the percentile of 300 requests"},
            "partial": chosen != SCENARIOS, "scenarios": scenarios}


def _rss(edge: httpx.Client, auth: dict[str, str], state: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS rise of the file service (and the gateway's process) during one RSS_UPLOAD upload."""
    import threading

    import psutil

    watched = {"file": psutil.Process(state["services"]["file"][0]["pid"]), "gateway": _gateway_process(state)}
    before = {k: p.memory_info().rss for k, p in watched.items()}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for k, p in watched.items():
                peak[k] = max(peak[k], p.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    try:
        r = edge.post("/files", params={"name": "one-gib.bin"}, content=_body(RSS_UPLOAD), headers=auth)
    finally:
        done.set()
        sampler.join()
    secs = time.perf_counter() - began
    assert r.status_code == 201 and r.json()["size"] == RSS_UPLOAD, r.text[:300]
    # The gigabyte is not kept on the bench machine's disk longer than needed.
    assert edge.delete(f"/files/{r.json()['id']}", headers=auth).status_code == 204
    assert edge.delete(f"/trash/{r.json()['id']}", headers=auth).status_code == 204
    return {"bytes": RSS_UPLOAD, "mib_s": RSS_UPLOAD / MiB / secs,
            "file_before_mib": before["file"] / MiB, "file_growth_mib": (peak["file"] - before["file"]) / MiB,
            "gateway_growth_mib": (peak["gateway"] - before["gateway"]) / MiB}


def _gateway_process(state: dict[str, Any]) -> Any:
    """The local gateway's process: the runner's child running ``stackwright.local.gateway``."""
    import psutil

    for child in psutil.Process(state["runner_pid"]).children():
        if "stackwright.local.gateway" in " ".join(child.cmdline()):
            return child
    raise RuntimeError("the local gateway's process is not among the runner's children")


def _wait_up(client: httpx.Client) -> None:
    for _ in range(100):
        try:
            client.get("/?0")
            return
        except httpx.HTTPError:
            time.sleep(0.1)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    sc = doc.get("scenarios", {})
    rows = []
    for name, ref, share in (("upload", "sink_mib_s", 0.5), ("download", "source_mib_s", 0.5)):
        if name in sc:
            s = sc[name]
            rows.append({"target": f"{name} MiB/s through the edge >= {share} x bare ASGI",
                         "measured": f"{s['edge_mib_s']:.0f} vs {s[ref]:.0f} MiB/s = {s['ratio']:.2f}x",
                         "met": s["ratio"] >= share})
    if "rss" in sc:
        s = sc["rss"]
        rows.append({"target": "a 1 GiB upload raises the file service's RSS by < 64 MiB",
                     "measured": f"+{s['file_growth_mib']:.1f} MiB", "met": s["file_growth_mib"] < 64})
    if "variants" in sc:
        s = sc["variants"]
        rows.append({"target": "variants/s of image-processing >= 0.8 x Pillow directly",
                     "measured": f"{s['service_per_s']:.2f} vs {s['pillow_per_s']:.2f}/s = {s['ratio']:.2f}x",
                     "met": s["ratio"] >= 0.8})
    return rows


def markdown(doc: dict[str, Any]) -> list[str]:
    sc = doc.get("scenarios", {})
    lines = ["", "| scenario | measured |", "|---|---|"]
    if "upload" in sc:
        u = sc["upload"]
        lines.append(f"| upload 64 MiB | edge {u['edge_mib_s']:.0f} MiB/s, file service directly "
                     f"{u.get('direct_mib_s', 0):.0f} MiB/s, bare sink {u['sink_mib_s']:.0f} MiB/s |")
        if "durable_sink_mib_s" in u:
            lines.append(f"| upload 64 MiB, disk ceiling (reference, not the target's baseline) | bare sink writing "
                         f"+ fsyncing the body {u['durable_sink_mib_s']:.0f} MiB/s; edge = "
                         f"{u['durable_ratio']:.2f}x of it |")
        if "cpu_s_per_upload" in u:
            c = u["cpu_s_per_upload"]
            durable = f" (writing + fsyncing {c['durable']['sink']:.2f})" if c.get("durable") else ""
            lines.append(f"| CPU seconds per 64 MiB upload | bare sink {c['sink']['sink']:.2f}{durable}; file service "
                         f"directly {c['direct']['file']:.2f}; through the edge gateway {c['edge']['gateway']:.2f} "
                         f"+ file service {c['edge']['file']:.2f} |")
    if "download" in sc:
        d = sc["download"]
        lines.append(f"| download 64 MiB | edge {d['edge_mib_s']:.0f} MiB/s, file service directly "
                     f"{d.get('direct_mib_s', 0):.0f} MiB/s, bare source {d['source_mib_s']:.0f} MiB/s |")
    if "small" in sc:
        lines.append(f"| 1 KiB download through the edge | p50 {sc['small']['p50_ms']:.1f} ms, p99 "
                     f"{sc['small']['p99_ms']:.1f} ms ({sc['small']['requests']} sequential requests) |")
    if "variants" in sc:
        v = sc["variants"]
        lines.append(f"| variants ({v['photos']} photos 2400x1800, thumb + WebP preview) | service "
                     f"{v['service_per_s']:.2f}/s, Pillow directly {v['pillow_per_s']:.2f}/s |")
    if "rss" in sc:
        r = sc["rss"]
        lines.append(f"| 1 GiB upload through the edge | file service RSS +{r['file_growth_mib']:.1f} MiB (from "
                     f"{r['file_before_mib']:.0f} MiB), gateway +{r['gateway_growth_mib']:.1f} MiB, "
                     f"{r['mib_s']:.0f} MiB/s |")
    return lines


def summary(doc: dict[str, Any]) -> list[str]:
    return markdown(doc)[3:]

