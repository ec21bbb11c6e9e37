"""`stackwright rollout` on the running voting system: the vote service's canary rehearsed with the rendered
AnalysisTemplate's own queries on the real Prometheus, under live votes through the gateway."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.rehearsal import Client, rehearse, rendered_queries, server_errors

from stackwright.render.k8s.rollout import resolve_args

from .conftest import Voting

VOTE = Path(__file__).resolve().parents[1] / "services" / "vote"
RATE = 60.0  # votes/s: enough for min_requests (50) canary requests per window at the 10% step


@pytest.fixture
def votes(voting: Voting) -> Any:
    """An open-loop request function: each viewer votes once in each of a few open polls (then 409s)."""
    polls = [voting.new_poll()["id"] for _ in range(8)]
    viewers = [voting.token(f"canary-viewer-{i}") for i in range(60)]  # 1 vote/s each: under the 5/s limit
    pairs = list(itertools.product(polls, viewers))

    async def vote(client: Client, i: int) -> tuple[int, Any]:
        poll, headers = pairs[i % len(pairs)]
        return await client.send("POST", f"/polls/{poll}/votes", {"option": "A"}, headers), None

    return vote


def _canaries(voting: Voting) -> Any:
    return httpx.get(f"{voting.state['gateway_admin']}/canary", timeout=5).json()


def test_a_good_version_is_promoted_by_the_rendered_analysis(voting: Voting, votes: Any) -> None:
    result, outcomes, lines = rehearse(voting.system, "vote", VOTE, voting.state_root, RATE, votes, voting.base)
    assert result.outcome == "promoted", "\n".join(lines)
    # The rehearsal ran the AnalysisTemplate's queries as `render` writes them, hashes filled in as Argo does.
    assert result.template_queries == rendered_queries(voting.system, "vote")
    assert result.ran_queries == {n: resolve_args(q, canary_hash=result.canary_hash, stable_hash=result.stable_hash)
                                  for n, q in result.template_queries.items()}
    judged = [r for m in result.measurements for r in m["results"] if r["phase"] == "Successful"]
    assert {r["metric"] for r in judged} == {"error-rate", "latency-p99", "success-rate-drop"}
    assert any(m["weight"] == 50 for m in result.measurements)
    assert "rehearsal overrides: interval=4s, pause=4s, scrape-interval=1s" in lines[1]
    assert server_errors(outcomes) == 0
    assert _canaries(voting) == {}


def test_five_percent_500s_abort_on_the_error_rate_gate(voting: Voting, votes: Any) -> None:
    result, outcomes, lines = rehearse(voting.system, "vote", VOTE, voting.state_root, RATE, votes, voting.base,
                                       inject="error-rate=0.05")
    assert result.outcome == "aborted", "\n".join(lines)
    assert result.reason.startswith("analysis failed: error-rate failed"), result.reason
    rates = [r for m in result.measurements for r in m["results"] if r["metric"] == "error-rate" and r["value"]]
    assert len([r for r in rates if r["phase"] == "Failed"]) == 2  # failureLimit 1: the second failure aborts
    assert all(0.02 < r["value"] < 0.1 for r in rates)  # the canary's own 5%, measured by Prometheus
    # (5% fewer successes on the canary fails the success-rate gate too, listed after error-rate.)
    # Clients saw the canary's 5% of its share (10%, then 50%) at most; none before or after.
    errors = server_errors(outcomes)
    assert 0 < errors <= 0.05 * 0.5 * len(outcomes) + 2, (errors, len(outcomes))
    assert _canaries(voting) == {}  # all traffic back on stable
    poll = voting.new_poll()["id"]
    after = [voting.client.post(f"/polls/{poll}/votes", json={"option": "B"}, headers=voting.token(f"after-{i}"))
             for i in range(40)]
    assert [r.status_code for r in after] == [202] * 40


def test_a_crashing_version_never_gets_traffic(voting: Voting, votes: Any) -> None:
    result, outcomes, lines = rehearse(voting.system, "vote", VOTE, voting.state_root, 10.0, votes, voting.base,
                                       inject="crash")
    assert result.outcome == "aborted", "\n".join(lines)
    assert "crash-looping" in result.reason and "exit code 70" in result.reason
    assert result.measurements == []
    assert server_errors(outcomes) == 0
    assert _canaries(voting) == {}
