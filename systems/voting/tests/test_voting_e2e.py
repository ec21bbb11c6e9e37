"""The voting system end to end through the edge gateway, against real Postgres and Redis processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from typing import Any

import httpx
import pytest

from stackwright.local.state import read_state
from stackwright.runtime.queue import queue_from_url

pytestmark = pytest.mark.integration








def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    return resp.json()


def test_vote_once_and_see_results(voting: Any) -> None:
    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    accepted = voting.client.post(url, json={"option": "B"}, headers=voting.token("alice"))
    assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
    again = voting.client.post(url, json={"option": "A"}, headers=voting.token("alice"))
    assert "already voted" in problem(again, 409)["detail"]
    voting.client.post(url, json={"option": "B"}, headers=voting.token("bob"))
    voting.client.post(url, json={"option": "C"}, headers=voting.token("carol"))
    final = voting.wait_until(lambda: (r := voting.results(poll["id"]))["total"] == 3 and r)
    assert final["totals"] == {"A": 0, "B": 2, "C": 1} and final["source"] == "cache"
    assert voting.db_count(poll["id"]) == 3
    listed = voting.client.get("/polls", params={"status": "open"}).json()["polls"]
    assert poll["id"] in [p["id"] for p in listed]


def test_a_refused_vote_writes_nothing(voting: Any) -> None:
    """The second vote of a viewer is a 409 that leaves the dedup key and the queue as they were."""
    import redis

    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    first = voting.client.post(url, json={"option": "A"}, headers=voting.token("erin"))
    assert first.status_code == 202
    r = redis.Redis.from_url(voting.state["resources"]["cache"], decode_responses=True)
    stream, voted = f"sw:q:{voting.system.name}-votes", f"voted:{poll['id']}:erin"
    try:
        # The last id the stream generated moves with every XADD, even once the worker has deleted the entry.
        before = r.xinfo_stream(stream)["last-generated-id"]
        assert r.get(voted) == first.json()["vote_id"]
        again = voting.client.post(url, json={"option": "B"}, headers=voting.token("erin"))
        assert "already voted" in problem(again, 409)["detail"]
        assert r.xinfo_stream(stream)["last-generated-id"] == before
        assert r.get(voted) == first.json()["vote_id"]
    finally:
        r.close()
    final = voting.wait_until(lambda: (res := voting.results(poll["id"]))["total"] == 1 and res)
    assert final["totals"]["A"] == 1


def test_bad_requests_get_problem_json(voting: Any) -> None:
    poll = voting.new_poll()
    closed = voting.new_poll()
    voting.client.post(f"/polls/{closed['id']}/close", headers=voting.token("admin-1", "admin"))
    viewer = voting.token("dave")
    post = voting.client.post
    problem(post(f"/polls/{uuid.uuid4()}/votes", json={"option": "A"}, headers=viewer), 404)
    problem(post("/polls/not-a-uuid/votes", json={"option": "A"}, headers=viewer), 404)
    assert "not an option" in problem(post(f"/polls/{poll['id']}/votes", json={"option": "Z"}, headers=viewer),
                                      422)["detail"]
    assert "closed" in problem(post(f"/polls/{closed['id']}/votes", json={"option": "A"}, headers=viewer),
                               409)["detail"]
    problem(post(f"/polls/{poll['id']}/votes", content=b'{"option":', headers={**viewer,
                                                                              "content-type": "application/json"}), 400)
    problem(post(f"/polls/{poll['id']}/votes", json={"choice": "A"}, headers=viewer), 422)
    problem(post(f"/polls/{poll['id']}/votes", json={"option": "A" * 20000}, headers=viewer), 413)
    problem(post("/polls", json={"title": "x", "options": ["A", "B"]}, headers=viewer), 403)
    problem(post("/polls", json={"title": "x", "options": ["A", "A"]}, headers=voting.token("admin-1", "admin")), 422)
    problem(post(f"/polls/{poll['id']}/votes", json={"option": "A"}), 401)
    problem(voting.client.get(f"/polls/{uuid.uuid4()}/results"), 404)
    problem(voting.client.get("/polls", params={"status": "weird"}), 422)
    for limit in ("-1", "0", "201", "ten"):  # -1 and 201 were clamped to 1 and 200 (200 OK) before
        problem(voting.client.get("/polls", params={"limit": limit}), 422)
    # Nothing above was counted.
    time.sleep(1.0)
    assert voting.results(poll["id"])["total"] == 0 and voting.db_count(poll["id"]) == 0


def test_token_attacks_are_401(voting: Any) -> None:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    now = int(time.time())
    ident = voting.system.edge.identity
    claims = {"iss": ident.issuer, "aud": ident.audience, "sub": "eve", "iat": now, "exp": now + 60}
    header, _, sig = voting.idp.mint("eve", []).split(".")
    attacks = {
        "alg none": f"{b64({'alg': 'none'})}.{b64(claims)}.",
        "tampered": f"{header}.{b64({**claims, 'sub': 'someone-else'})}.{sig}",
        "wrong audience": voting.idp.mint("eve", [], extra={"aud": "https://elsewhere"}),
        "wrong issuer": voting.idp.mint("eve", [], extra={"iss": "https://evil/"}),
        "expired": voting.idp.mint("eve", [], ttl_s=-60),
        "not yet valid": voting.idp.mint("eve", [], extra={"nbf": now + 3600}),
        "garbage": "not.a.token",
    }
    for name, token in attacks.items():
        resp = voting.client.post(url, json={"option": "A"}, headers={"authorization": f"Bearer {token}"})
        assert resp.status_code == 401, f"{name}: {resp.status_code} {resp.text}"
    assert voting.results(poll["id"])["total"] == 0


def test_idempotency_key_replays_the_acceptance(voting: Any) -> None:
    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    headers = {**voting.token("frank"), "Idempotency-Key": "k-123"}
    first = voting.client.post(url, json={"option": "A"}, headers=headers)
    second = voting.client.post(url, json={"option": "A"}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["vote_id"] == second.json()["vote_id"]
    assert second.headers.get("idempotent-replayed") == "true"
    voting.wait_until(lambda: voting.results(poll["id"])["total"] == 1)
    time.sleep(0.5)
    assert voting.db_count(poll["id"]) == 1


def test_rate_limit_per_viewer(voting: Any) -> None:
    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    greedy = voting.token("greedy")
    statuses = [voting.client.post(url, json={"option": "A"}, headers=greedy) for _ in range(15)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert voting.client.post(url, json={"option": "B"}, headers=voting.token("calm")).status_code == 202


def test_redelivered_vote_counts_once(voting: Any) -> None:
    poll = voting.new_poll()
    resp = voting.client.post(f"/polls/{poll['id']}/votes", json={"option": "A"}, headers=voting.token("gina"))
    assert resp.status_code == 202
    voting.wait_until(lambda: voting.results(poll["id"])["total"] == 1)
    body = {"vote_id": resp.json()["vote_id"], "poll_id": poll["id"], "user_id": "gina", "option": "A",
            "accepted_at": time.time(), "sent_at": time.time()}

    async def redeliver() -> None:
        # What SQS does after a worker crashed between writing and acking: the same message again,
        # plus a forged second vote for the same viewer with another option.
        q = queue_from_url(voting.state["resources"]["votes"], "voting-votes")
        await q.send(body)
        await q.send({**body, "vote_id": str(uuid.uuid4()), "option": "B"})
        deadline = time.monotonic() + 20
        while await q.depth() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await q.close()

    asyncio.run(redeliver())
    time.sleep(0.5)
    final = voting.results(poll["id"])
    assert final["totals"] == {"A": 1, "B": 0, "C": 0}
    assert voting.db_count(poll["id"]) == 1


def test_worker_crash_loses_and_duplicates_nothing(voting: Any) -> None:
    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    worker = read_state("voting", voting.state_root)["services"]["worker"][0]
    os.kill(worker["pid"], signal.SIGKILL)
    accepted = sum(voting.client.post(url, json={"option": "ABC"[i % 3]}, headers=voting.token(f"crash-{i}")
                                      ).status_code == 202 for i in range(150))
    assert accepted == 150

    def restarted() -> bool:
        now = read_state("voting", voting.state_root)["services"]["worker"][0]["pid"]
        return bool(now) and now != worker["pid"]

    voting.wait_until(restarted, timeout_s=30)
    final = voting.wait_until(lambda: (r := voting.results(poll["id"]))["total"] == 150 and r, timeout_s=60)
    assert final["totals"] == {"A": 50, "B": 50, "C": 50}
    assert voting.db_count(poll["id"]) == 150
    assert read_state("voting", voting.state_root)["restarts"]["worker"] >= 1


def test_a_poll_without_votes_is_read_from_redis_not_postgres(voting: Any) -> None:
    import redis

    poll = voting.new_poll()
    fresh = voting.results(poll["id"])
    assert fresh["source"] == "cache" and fresh["totals"] == {"A": 0, "B": 0, "C": 0}
    redis.Redis.from_url(voting.state["resources"]["cache"]).delete(f"totals:{poll['id']}")  # Redis lost it
    assert voting.results(poll["id"])["source"] == "database"
    worker_url = read_state("voting", voting.state_root)["services"]["worker"][0]["url"]
    assert httpx.post(f"{worker_url}/admin/rebuild").status_code == 200
    rebuilt = voting.results(poll["id"])
    assert rebuilt["source"] == "cache" and rebuilt["totals"] == {"A": 0, "B": 0, "C": 0}


def test_results_survive_redis_losing_aggregates(voting: Any) -> None:
    import redis

    poll = voting.new_poll()
    for i, option in enumerate("AABC"):
        voting.client.post(f"/polls/{poll['id']}/votes", json={"option": option}, headers=voting.token(f"r-{i}"))
    expected = {"A": 2, "B": 1, "C": 1}
    voting.wait_until(lambda: voting.results(poll["id"])["totals"] == expected)
    r = redis.Redis.from_url(voting.state["resources"]["cache"])
    r.delete(f"totals:{poll['id']}", f"counted:{poll['id']}")
    fallback = voting.results(poll["id"])
    assert fallback["source"] == "database" and fallback["totals"] == expected
    worker_url = read_state("voting", voting.state_root)["services"]["worker"][0]["url"]
    assert httpx.post(f"{worker_url}/admin/rebuild").status_code == 200
    rebuilt = voting.results(poll["id"])
    assert rebuilt["source"] == "cache" and rebuilt["totals"] == expected


def test_live_results_stream(voting: Any) -> None:
    poll = voting.new_poll()
    events: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{voting.base}/polls/{poll['id']}/results/stream", timeout=15) as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                break
        voting.client.post(f"/polls/{poll['id']}/votes", json={"option": "C"}, headers=voting.token("sse-1"))
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["total"] == 1:
                    break
    assert events[0]["total"] == 0 and events[-1]["totals"]["C"] == 1


def test_web_page_and_auth_me(voting: Any) -> None:
    page = voting.client.get("/")
    assert page.status_code == 200 and "<title>Live vote</title>" in page.text
    me = voting.client.get("/auth/me", headers=voting.token("henry", "viewer"))
    assert me.status_code == 200 and me.json()["sub"] == "henry" and me.json()["roles"] == ["viewer"]
    problem(voting.client.get("/auth/me"), 401)
    problem(voting.client.get("/no-such-page"), 404)
