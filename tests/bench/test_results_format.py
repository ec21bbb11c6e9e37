"""Result files: per_replica.json in bench/FORMAT.md's shape (plan reads it back), RESULTS.md regenerated
between markers, machine readings from /proc."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stackwright.bench import procs
from stackwright.bench.results import BEGIN, END, per_replica, targets, update_results_md, write_all
from stackwright.bench.sources import VoteRequests
from stackwright.plan.throughput import load_bench
from stackwright.spec import load_system
from tests.conftest import REPO

VOTING = REPO / "systems" / "voting" / "system.yaml"


def _point(rps: float, p99: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {"offered_rps": rps, "achieved_rps": rps, "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": p99,
                                                                     "p99.9": p99 * 2},
            "cpu_ms_per_request": cpu, "duration_s": 8.0}


def _doc() -> dict[str, Any]:
    machine = procs.machine()
    return {
        "schema": 1, "system": "voting", "started_at": "2026-01-02T03:04:05+00:00", "duration_s": 500.0,
        "machine": machine, "machine_line": procs.describe(machine),
        "load_average_before": [0.1, 0.2, 0.3], "load_average_after": [1.1, 1.2, 1.3],
        "command": "stackwright bench voting",
        "load_generator": {"kind": "open loop", "processes": 2, "viewer_tokens": 20000},
        "criteria": {"text": "p99 <= 50 ms"},
        "scenarios": {
            "baseline": {"processes": ["baseline"], "max_rps": 10000.0,
                         "points": {"50%": _point(5000, 2, {"baseline": 0.05}),
                                    "90%": _point(9000, 5, {"baseline": 0.08})},
                         "peak_rss_mib": {"baseline": 40.0}},
            "vote_direct": {"processes": ["vote"], "max_rps": 2000.0, "target": "vote, 1 process",
                            "points": {"50%": _point(1000, 12, {"vote": 0.4}),
                                       "90%": _point(1800, 30, {"vote": 0.5})},
                            "at_max": _point(2000, 45, {"vote": 0.5}), "peak_rss_mib": {"vote": 90.0}},
            "results_cached": {"processes": ["results"], "max_rps": 8000.0, "target": "results",
                               "points": {"50%": _point(4000, 3, {"results": 0.1}),
                                          "90%": _point(7200, 9, {"results": 0.12})},
                               "at_max": _point(8000, 20, {"results": 0.12})},
            "worker_drain": {"drained": 50000, "seconds": 5.0, "rate_per_s": 10000.0,
                             "cpu_ms_per_message": {"worker": 0.05, "redis": 0.01}, "cpu_percent": {"worker": 50.0},
                             "peak_rss_mib": {"worker": 80.0}},
            "end_to_end": {"rate_rps": 900.0, "counted_per_s": 890.0, "accepted": 54000, "counted_postgres": 54000,
                           "counted_redis": 54000, "exactly_once": True,
                           "sustained": {**_point(900, 40, {"vote": 0.5}), "duration_s": 60.0, "queue_bounded": True,
                                         "queue_depth_max": 300, "queue_depth_slope_per_s": 0.5},
                           "peak_rss_mib": {}},
        },
    }


def test_per_replica_follows_the_format_and_plan_reads_it(tmp_path: Path) -> None:
    system = load_system(VOTING)
    data = per_replica(_doc(), system)
    assert data["schema"] == 1 and data["measured_at"] == "2026-01-02"
    assert list(data["services"]) == sorted(data["services"])
    vote = data["services"]["voting/vote"]
    # 0.5 ms of CPU per request = 500 millicores per 1k rps; the spec's 500m request holds 1,000 rps.
    assert vote["cpu_millicores_per_1k_rps"] == 500.0
    assert vote["rps_per_replica"] == 1000.0
    assert vote["p99_ms"] == 45.0
    # results: 120 mc per 1k rps at 250m -> 2,083 rps (below the 8,000 the whole core held).
    assert round(data["services"]["voting/results"]["rps_per_replica"]) == 2083
    assert data["services"]["voting/worker"]["rps_per_replica"] == 10000.0
    path = tmp_path / "per_replica.json"
    path.write_text(json.dumps(data))
    loaded = load_bench(path)
    assert set(loaded.services) == {"voting/vote", "voting/results", "voting/worker"}


def test_results_md_keeps_text_outside_the_markers(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Results\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Analysis\nkept\n")
    update_results_md(md, _doc())
    text = md.read_text()
    assert "intro" in text and "## Analysis\nkept" in text and "old table" not in text
    assert text.count(BEGIN) == 1 and "| vote_direct | vote | 2,000 |" in text
    assert "before 0.1 / 0.2 / 0.3" in text and "`stackwright bench voting`" in text


def test_write_all_creates_the_three_files(tmp_path: Path) -> None:
    paths = write_all(_doc(), load_system(VOTING), tmp_path)
    assert paths["results"] == tmp_path / "results" / "2026-01-02.json"
    assert json.loads(paths["results"].read_text())["scenarios"]["vote_direct"]["max_rps"] == 2000.0
    assert paths["markdown"].read_text().startswith("# Benchmark results")
    assert load_bench(paths["per_replica"]).measured_at == "2026-01-02"


def test_targets_report_met_and_missed() -> None:
    rows = {r["target"]: r["met"] for r in targets(_doc())}
    assert rows["vote ingest, 1 process >= 50% of baseline"] is False  # 20%
    assert rows["results reads (cached) >= 70% of baseline"] is True  # 80%
    assert rows["end to end >= 10,000 counted votes/s for 60 s, queue bounded"] is False
    assert rows["ingest p99 < 20 ms at 50% of max"] is True


def test_proc_readings_of_this_process() -> None:
    group = procs.ProcessGroup("me", os.getpid())
    window = procs.CpuWindow([group]).start()
    sum(i * i for i in range(200_000))
    window.stop()
    assert window.used_s["me"] >= 0
    assert (group.peak_rss_mib() or 0) > 1
    m = procs.machine()
    assert m["nproc"] >= 1 and m["python"] and m["memory_gib"] > 0
    assert procs.describe(m).startswith(f"{m['nproc']} vCPU")
    assert len(procs.load_average()) == 3


def test_vote_requests_never_repeat_a_viewer_in_a_poll() -> None:
    source = VoteRequests([f"t{i}" for i in range(7)], ["a", "b", "c"])
    assert source.capacity == 21
    pairs = set()
    for i in range(21):
        raw = source.build(i, "h:1").decode()
        path = raw.split(" ")[1]
        token = raw.split("authorization: Bearer ")[1].split("\r\n")[0]
        pairs.add((path, token))
        assert raw.endswith("}") and "content-length: " in raw
    assert len(pairs) == 21
    assert source.poll_of(6) == "a" and source.poll_of(7) == "b"
