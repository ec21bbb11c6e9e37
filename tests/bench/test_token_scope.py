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


def test_client_tokens_are_minted_when_first_used(tmp_path: Path) -> None:
    # speech's bench never sends them and waited ~19 s for 20,000 on a first run (newcomer pass, 2026-11-30).
    bench = _bench("voting", "VotingBench", tmp_path)
    bench.opt.users = 50
    assert not list(tmp_path.rglob("*token*"))  # nothing minted by building the bench
    tokens = bench.tokens
    assert len(tokens) == 50 and len(set(tokens)) == 50
    assert bench.tokens is tokens  # minted once
    again = _bench("voting", "VotingBench", tmp_path)
    again.opt.users = 50
    assert again.tokens == tokens  # and cached between runs
