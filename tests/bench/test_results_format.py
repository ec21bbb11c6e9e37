"""Result files, generic part: per system raw files, RESULTS.md blocks per system between markers,
per_replica.json rows merged by system (plan reads it back), machine readings from /proc. The plug-in
here is a minimal one written for the test; voting's own plug-in is tested in systems/voting/tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stackwright.bench import procs
from stackwright.bench.results import (
    begin_marker,
    end_marker,
    per_replica,
    searched_row,
    share_of_baseline,
    update_results_md,
    write_all,
)
from stackwright.bench.sources import PairRequests
from stackwright.plan.throughput import load_bench
from stackwright.spec import load_system
from tests.conftest import REPO

VOTING = REPO / "systems" / "voting" / "system.yaml"
FASTAPI = REPO / "systems" / "fastapi-app" / "system.yaml"


def _plugin() -> SimpleNamespace:
    """The smallest bench plug-in: vote_direct stands for the vote service, one target."""
    return SimpleNamespace(
        per_replica=lambda doc, system: {"vote": searched_row(doc, system, "vote", "vote_direct")},
        targets=lambda doc: [share_of_baseline(doc, "vote_direct", "ingest >= 50% of baseline", 0.5)],
        markdown=lambda doc: ["", "plug-in line"])


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


def test_per_replica_rows_are_keyed_by_system_and_plan_reads_them(tmp_path: Path) -> None:
    system = load_system(VOTING)
    data = per_replica(_doc(), system, _plugin())
    assert data["schema"] == 1 and data["measured_at"] == "2026-01-02"
    vote = data["services"]["voting/vote"]
    # 0.5 ms of CPU per request = 500 millicores per 1k rps; the spec's 500m request holds 1,000 rps.
    assert vote["cpu_millicores_per_1k_rps"] == 500.0 and vote["rps_per_replica"] == 1000.0
    # The whole core's rate is kept so plan can redo the sum; the note no longer claims a bare "rescaled to 500m".
    assert vote["whole_core_rps"] == 2000.0 and "rescaled by CPU to" not in vote["note"]
    assert vote["p99_ms"] == 45.0 and vote["measured_at"] == "2026-01-02"
    path = tmp_path / "per_replica.json"
    path.write_text(json.dumps(data))
    assert set(load_bench(path).services) == {"voting/vote"}


def test_results_md_keeps_text_and_other_systems_outside_the_block(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    other = f"{begin_marker('shop')}\nshop table\n{end_marker('shop')}"
    md.write_text(f"# Results\n\nintro\n\n{begin_marker('voting')}\nold table\n{end_marker('voting')}\n\n"
                  f"{other}\n\n## Analysis\nkept\n")
    update_results_md(md, _doc(), _plugin())
    text = md.read_text()
    assert "intro" in text and "## Analysis\nkept" in text and "old table" not in text and other in text
    assert text.count(begin_marker("voting")) == 1 and "| vote_direct | vote | 2,000 |" in text
    assert "plug-in line" in text and "| ingest >= 50% of baseline | 2,000/s = 20% of 10,000/s | **no** |" in text
    assert "before 0.1 / 0.2 / 0.3" in text and "`stackwright bench voting`" in text


def test_a_second_systems_run_keeps_the_first_systems_figures(tmp_path: Path) -> None:
    paths = write_all(_doc(), load_system(VOTING), tmp_path, _plugin())
    assert paths["results"] == tmp_path / "results" / "voting" / "2026-01-02.json"
    assert json.loads(paths["results"].read_text())["scenarios"]["vote_direct"]["max_rps"] == 2000.0
    first = json.loads(paths["per_replica"].read_text())["services"]["voting/vote"]
    doc = {**_doc(), "system": "fastapi-app", "started_at": "2026-02-03T00:00:00+00:00",
           "scenarios": {**_doc()["scenarios"], "items_read": _doc()["scenarios"]["vote_direct"]}}
    shop = SimpleNamespace(per_replica=lambda d, s: {"api": searched_row(d, s, "api", "items_read", "vote")})
    write_all({**doc, "command": "stackwright bench fastapi-app --redis-fsync always"}, load_system(FASTAPI),
              tmp_path, shop)
    merged = load_bench(paths["per_replica"])
    assert set(merged.services) == {"voting/vote", "fastapi-app/api"}
    assert json.loads(paths["per_replica"].read_text())["services"]["voting/vote"] == first
    text = paths["markdown"].read_text()
    assert begin_marker("voting") in text and begin_marker("fastapi-app") in text
    # Each block's make spelling runs that system with that run's options (`make bench` alone is voting's).
    assert "`stackwright bench voting` (or `make bench SYSTEM=voting`)" in text
    assert ("`stackwright bench fastapi-app --redis-fsync always` (or `make bench SYSTEM=fastapi-app "
            "BENCH_ARGS='--redis-fsync always'`)") in text
    assert "(2 processes)" in text
    # The same system again replaces its own rows and block, nothing else.
    write_all(_doc(), load_system(VOTING), tmp_path, _plugin())
    assert set(load_bench(paths["per_replica"]).services) == {"voting/vote", "fastapi-app/api"}
    assert paths["markdown"].read_text().count(begin_marker("voting")) == 1


def test_a_system_without_per_replica_rows_leaves_the_file_and_shows_no_empty_table(tmp_path: Path) -> None:
    paths = write_all(_doc(), load_system(VOTING), tmp_path, _plugin())
    before = paths["per_replica"].read_bytes()
    # A system whose bench measures streams, not a rate search: no rows, no rate-searched scenarios.
    doc = {**_doc(), "system": "fastapi-app", "started_at": "2026-03-04T00:00:00+00:00",
           "scenarios": {"wer": {"clips": 3}}}
    plugin = SimpleNamespace(markdown=lambda d: ["", "**wer**: 0.1"])
    write_all(doc, load_system(FASTAPI), tmp_path, plugin)
    assert paths["per_replica"].read_bytes() == before  # voting's rows and the file's stamp untouched
    text = paths["markdown"].read_text()
    block = text[text.index(begin_marker("fastapi-app")):text.index(end_marker("fastapi-app"))]
    assert "**wer**: 0.1" in block and "max sustained rps" not in block


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


def test_pair_requests_never_repeat_a_client_on_a_target() -> None:
    source = PairRequests("/polls/{target}/votes", [f"t{i}" for i in range(7)], ["a", "b", "c"], [b'{"o":1}'])
    assert source.capacity == 21
    pairs = set()
    for i in range(21):
        raw = source.build(i, "h:1").decode()
        path = raw.split(" ")[1]
        token = raw.split("authorization: Bearer ")[1].split("\r\n")[0]
        pairs.add((path, token))
        assert raw.endswith("}") and "content-length: " in raw
    assert len(pairs) == 21
    assert source.target_of(6) == "a" and source.target_of(7) == "b"
