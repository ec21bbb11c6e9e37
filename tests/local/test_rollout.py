"""The canary rehearsal's pieces without a running system: the gateway's weighted split, injected faults,
Argo's judgement of a query result, the relabelled scrape config, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackwright.cli import _register, app
from stackwright.local.rollout import INCONCLUSIVE, Analysis, RolloutError, check_rehearsal, judge
from stackwright.local.traffic_split import TrafficSplit
from stackwright.monitoring import scrape_config
from stackwright.render.k8s.rollout import HASH_METRIC_LABEL, resolve_args, template_metrics
from stackwright.runtime.faults import Fault, FaultSpecError, parse_fault
from stackwright.spec import System, load_system

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def voting() -> System:
    return load_system("voting", root=ROOT)


def test_the_split_sends_exactly_the_weight_to_the_canary() -> None:
    split = TrafficSplit({"vote": ["http://s1", "http://s2"]})
    assert {split.pick("vote") for _ in range(10)} == {"http://s1", "http://s2"}
    split.set_canary("vote", ["http://c1"], 10)
    picks = [split.pick("vote") for _ in range(200)]
    assert picks.count("http://c1") == 20
    split.set_canary("vote", ["http://c1"], 50)
    assert [split.pick("vote") for _ in range(100)].count("http://c1") == 50
    assert split.describe() == {"vote": {"urls": ["http://c1"], "weight": 50}}
    assert split.clear_canary("vote") and "http://c1" not in {split.pick("vote") for _ in range(50)}
    for bad in (("nope", ["http://c1"], 10), ("vote", [], 10), ("vote", ["http://c1"], 101),
                ("vote", ["ftp://c1"], 10), ("vote", ["http://c1"], True)):
        with pytest.raises(ValueError):
            split.set_canary(*bad)  # type: ignore[arg-type]


async def test_an_error_rate_fault_fails_exactly_its_share() -> None:
    fault = parse_fault("error-rate=0.05")
    failed = [await fault.before_request() for _ in range(400)]
    assert sum(failed) == 20
    assert parse_fault("latency-ms=400") == Fault(latency_ms=400)
    assert parse_fault("crash").crash
    for bad in ("error-rate=0", "error-rate=2", "latency-ms=x", "explode", ""):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


def test_no_data_and_nan_are_inconclusive_never_a_pass() -> None:
    assert judge("error-rate", [], 0.01).phase == INCONCLUSIVE
    assert judge("error-rate", [{"metric": {}, "value": [0, "NaN"]}], 0.01).phase == INCONCLUSIVE
    assert judge("error-rate", [{"metric": {}, "value": [0, "0.05"]}], 0.01).phase == "Failed"
    assert judge("error-rate", [{"metric": {}, "value": [0, "0.01"]}], 0.01).phase == "Successful"


def test_the_analysis_counts_like_argo(voting: System) -> None:
    metrics = template_metrics(voting, "vote")
    for m in metrics:
        m["limit"] = 0.5
    run = Analysis(metrics, "c0ffee0000", "5ab1e00000")
    assert all("c0ffee0000" in q and "{{args" not in q for q in run.ran.values())
    assert run.ran["error-rate"] == resolve_args(metrics[0]["provider"]["prometheus"]["query"],
                                                 canary_hash="c0ffee0000", stable_hash="5ab1e00000")
    # Nothing listens on port 9: every query errs, and after consecutiveErrorLimit + 1 the run errs.
    for _ in range(metrics[0]["consecutiveErrorLimit"] + 1):
        run.measure("http://127.0.0.1:9")
    assert run.phase == "Error" and not run.every_gate_passed()


def test_the_canary_targets_carry_the_pod_template_hash(voting: System) -> None:
    cfg = scrape_config(voting, {"vote": ["127.0.0.1:1", "127.0.0.1:2"]},
                        target_labels={"127.0.0.1:1": {HASH_METRIC_LABEL: "aaa"},
                                       "127.0.0.1:2": {HASH_METRIC_LABEL: "bbb"}})
    groups = cfg["scrape_configs"][0]["static_configs"]
    assert [(g["targets"], g["labels"][HASH_METRIC_LABEL]) for g in groups] == [(["127.0.0.1:1"], "aaa"),
                                                                                 (["127.0.0.1:2"], "bbb")]
    assert scrape_config(voting, {"vote": ["127.0.0.1:1"]})["scrape_configs"][0]["static_configs"][0]["labels"] == {
        "service": "vote", "system": "voting"}


def test_refusals_are_one_line(voting: System, tmp_path: Path) -> None:
    vote = ROOT / "systems" / "voting" / "services" / "vote"
    cases = [("nope", vote, "has no service 'nope'"), ("results", vote, "has no canary rollout"),
             ("vote", tmp_path / "missing", "is not a folder"), ("vote", tmp_path, "has no app.py"),
             ("vote", vote, "voting is not running (start it with: stackwright up voting --monitoring)")]
    for service, path, message in cases:
        with pytest.raises(RolloutError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_rehearsal(voting, service, path, tmp_path)


def test_the_command_says_why_in_one_line(tmp_path: Path) -> None:
    _register()
    vote = ROOT / "systems" / "voting" / "services" / "vote"
    runner = CliRunner()
    out = runner.invoke(app, ["rollout", str(ROOT / "systems/voting/system.yaml"), "vote", "--path", str(vote),
                              "--state-dir", str(tmp_path)])
    assert out.exit_code == 2 and "voting is not running" in out.output
    out = runner.invoke(app, ["rollout", str(ROOT / "systems/voting/system.yaml"), "vote", "--path", str(vote),
                              "--inject", "error-rate=7"])
    assert out.exit_code == 2 and "--inject: unknown fault" in out.output
    out = runner.invoke(app, ["rollout", str(ROOT / "systems/voting/system.yaml"), "vote", "--path", str(vote),
                              "--interval", "soon"])
    assert out.exit_code == 2 and "--interval takes a duration" in out.output
