"""Per-process log files: the supervisor's stamped format, tails, --since, following across a restart,
and ``stackwright logs`` on top of them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackwright.cli import _register, app
from stackwright.local import logfiles

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "systems" / "fastapi-app" / "system.yaml")


def _write(log_dir: Path, name: str, *lines: tuple[float, str]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("a") as fh:
        for ts, text in lines:
            fh.write(logfiles.stamp(text, ts) + "\n")


def test_stamp_round_trips_and_unstamped_lines_are_kept() -> None:
    line = logfiles.parse_line("api", logfiles.stamp("GET /items 200", 1_700_000_000.25) + "\n")
    assert line == logfiles.LogLine("api", pytest.approx(1_700_000_000.25), "GET /items 200")
    assert logfiles.parse_line("api", "an old line") == logfiles.LogLine("api", None, "an old line")


def test_since_takes_durations_and_iso_times() -> None:
    assert logfiles.parse_since("5m", now=1000.0) == 700.0
    assert logfiles.parse_since("1.5h", now=10_000.0) == 4600.0
    assert logfiles.parse_since("2023-11-14T22:13:20Z") == 1_700_000_000.0
    with pytest.raises(ValueError, match="--since"):
        logfiles.parse_since("yesterday")


def test_tail_is_per_process_merged_in_time_order(tmp_path: Path) -> None:
    _write(tmp_path, "api", (10, "a1"), (30, "a2"), (50, "a3"))
    _write(tmp_path, "gateway", (20, "g1"), (40, "g2"))
    (tmp_path / "runner.log").write_text("not a process\n")
    assert logfiles.processes(tmp_path) == ["api", "gateway"]
    got = logfiles.tail(tmp_path, ["api", "gateway"], lines=2)
    assert [ln.text for ln in got] == ["g1", "a2", "g2", "a3"]
    got = logfiles.tail(tmp_path, ["api", "gateway"], since=35)
    assert [ln.text for ln in got] == ["g2", "a3"]


def test_follower_sees_appends_restarts_new_processes_and_truncation(tmp_path: Path) -> None:
    _write(tmp_path, "api", (1, "old"))
    follower = logfiles.Follower(tmp_path)
    assert follower.poll() == []
    _write(tmp_path, "api", (2, "[supervisor] api exited with code -9; restarting"), (3, "started again"))
    with (tmp_path / "api.log").open("a") as fh:
        fh.write(logfiles.stamp("half a li", 4))  # no newline yet: not a line
    assert [ln.text for ln in follower.poll()] == ["[supervisor] api exited with code -9; restarting",
                                                   "started again"]
    with (tmp_path / "api.log").open("a") as fh:
        fh.write("ne\n")
    assert [ln.text for ln in follower.poll()] == ["half a line"]
    _write(tmp_path, "worker", (5, "a new process"))
    assert [(ln.process, ln.text) for ln in follower.poll()] == [("worker", "a new process")]
    (tmp_path / "api.log").write_text(logfiles.stamp("fresh file", 6) + "\n")
    assert [ln.text for ln in follower.poll()] == ["fresh file"]


def _logs(*args: str) -> tuple[int, str]:
    _register()
    result = CliRunner().invoke(app, ["logs", SPEC, *args])
    return result.exit_code, result.output


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    now = time.time()
    logs = tmp_path / "fastapi-app" / "logs"
    _write(logs, "api", (now - 600, "long ago"), (now - 5, "api ready"))
    _write(logs, "postgres", (now - 4, "database system is ready"))
    return tmp_path


def test_logs_prefixes_each_line_with_its_process(state_dir: Path) -> None:
    code, out = _logs("--state-dir", str(state_dir))
    assert code == 0
    assert out.splitlines() == ["api      | long ago", "api      | api ready", "postgres | database system is ready"]
    code, out = _logs("api", "--since", "1m", "--state-dir", str(state_dir))
    assert out.splitlines() == ["api | api ready"]  # padded to the names shown
    code, out = _logs("--tail", "1", "-t", "--state-dir", str(state_dir))
    assert len(out.splitlines()) == 2 and "Z api ready" in out


def test_logs_of_an_unknown_process_lists_the_processes(state_dir: Path) -> None:
    code, out = _logs("nope", "--state-dir", str(state_dir))
    assert code != 0
    assert out.strip() == "error: fastapi-app has no process 'nope'; its processes: api, postgres"
