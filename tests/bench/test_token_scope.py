"""Bench client tokens are cached per system identity, not per signing key only."""

from __future__ import annotations

from pathlib import Path

from stackwright.bench.harness import BenchOptions, SystemBench
from stackwright.plugins import load_plugin
from stackwright.spec import load_system

SYSTEMS = Path(__file__).resolve().parents[2] / "systems"


def _bench(name: str, cls: str, root: Path) -> SystemBench:
    spec = SYSTEMS / name / "system.yaml"
    bench: SystemBench = getattr(load_plugin(load_system(spec), "bench"), cls)(spec, BenchOptions(state_root=root))
    return bench


def test_two_systems_benched_from_one_folder_do_not_share_tokens(tmp_path: Path) -> None:
    # Both sign with the folder's one dev key; voting's gateway refused speech's cached tokens (another
    # audience), 100% errors in the cache-hit scenario of the 2026-11-30 13:40 run.
    voting, payments = _bench("voting", "VotingBench", tmp_path), _bench("payments", "PaymentsBench", tmp_path)
    assert voting._idp().kid == payments._idp().kid
    assert voting.token_scope() != payments.token_scope()
    assert voting.token_scope() == _bench("voting", "VotingBench", tmp_path).token_scope()
