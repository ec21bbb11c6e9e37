"""Every Redis key the voting services write expires, and results stay right after a key expires.

The cache's eviction policy cannot evict keys without a TTL: keys that never expire fill it (a
cache.r6g.large after ~55 M votes) and then Redis refuses the writes a vote needs. Postgres is the record,
so an expired key costs a recount, never a wrong total.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis

pytestmark = pytest.mark.integration

# The local queue backend's streams (SQS on AWS): the queue, not cache data; acked entries are deleted.
QUEUE_PREFIX = "sw:q:"
CLOSED_POLL_TTL_S = 3600








def _cache(voting: Any) -> redis.Redis:
    return redis.Redis.from_url(voting.state["resources"]["cache"], decode_responses=True)


def test_every_key_the_services_write_has_a_ttl(voting: Any) -> None:
    poll = voting.new_poll()
    url = f"/polls/{poll['id']}/votes"
    for i, option in enumerate("ABCA"):
        headers = {**voting.token(f"ttl-{i}"), "Idempotency-Key": f"ttl-key-{i}"}
        assert voting.client.post(url, json={"option": option}, headers=headers).status_code == 202
    assert voting.client.post(url, json={"option": "B"}, headers=voting.token("ttl-0")).status_code == 409
    assert voting.client.get("/auth/me", headers=voting.token("ttl-0")).status_code == 200
    voting.wait_until(lambda: voting.results(poll["id"])["total"] == 4)
    admin = voting.token("admin-1", "admin")
    assert voting.client.post(f"/polls/{poll['id']}/close", headers=admin).status_code == 200

    r = _cache(voting)
    keys = [k for k in r.scan_iter(count=1000) if not k.startswith(QUEUE_PREFIX)]
    for kind in ("poll:", "totals:", "counted:", "voted:", "idem:", "session:"):
        assert any(k.startswith(kind) for k in keys), f"the flow wrote no {kind} key"
    forever = [k for k in keys if r.ttl(k) == -1]
    assert forever == [], f"{len(forever)} of {len(keys)} keys never expire, e.g. {forever[:5]}"
    # Closing the poll shortened its aggregates to the closed lifetime, the counted set never before its totals.
    totals, counted = f"totals:{poll['id']}", f"counted:{poll['id']}"
    assert 0 < r.ttl(totals) <= CLOSED_POLL_TTL_S and 0 < r.ttl(f"poll:{poll['id']}") <= CLOSED_POLL_TTL_S
    assert r.pttl(counted) >= r.pttl(totals)


def _expire_now(r: redis.Redis, *keys: str) -> None:
    for key in keys:
        r.pexpire(key, 1)
    time.sleep(0.05)
    assert not any(r.exists(k) for k in keys)


def test_results_stay_right_after_the_keys_expire(voting: Any) -> None:
    poll = voting.new_poll()
    pid = poll["id"]
    url = f"/polls/{pid}/votes"
    for i, option in enumerate("AAB"):
        assert voting.client.post(url, json={"option": option}, headers=voting.token(f"exp-{i}")).status_code == 202
    voting.wait_until(lambda: voting.results(pid)["totals"] == {"A": 2, "B": 1, "C": 0})
    r = _cache(voting)

    _expire_now(r, f"totals:{pid}", f"counted:{pid}", f"poll:{pid}")
    fallback = voting.results(pid)
    assert fallback["source"] == "database" and fallback["totals"] == {"A": 2, "B": 1, "C": 0}

    # The next vote finds the aggregates gone: the worker recounts the poll from Postgres, its own vote included.
    assert voting.client.post(url, json={"option": "C"}, headers=voting.token("exp-3")).status_code == 202
    expected = {"A": 2, "B": 1, "C": 1}
    voting.wait_until(lambda: (res := voting.results(pid))["source"] == "cache" and res["total"] == 4)
    assert voting.results(pid)["totals"] == expected
    assert r.ttl(f"totals:{pid}") > 0 and r.pttl(f"counted:{pid}") >= r.pttl(f"totals:{pid}")

    # A viewer whose dedup key expired may be told 202 again, but only their first vote counts.
    _expire_now(r, f"voted:{pid}:exp-0")
    assert voting.client.post(url, json={"option": "C"}, headers=voting.token("exp-0")).status_code == 202
    assert voting.client.post(url, json={"option": "B"}, headers=voting.token("exp-4")).status_code == 202
    voting.wait_until(lambda: voting.results(pid)["total"] == 5)
    time.sleep(0.5)  # the repeat vote, if it were counted, would land with exp-4's
    assert voting.results(pid)["totals"] == {"A": 2, "B": 2, "C": 1}
    assert voting.db_count(pid) == 5

    # After the poll closed and its keys expired, results come from Postgres, still right.
    admin = voting.token("admin-1", "admin")
    assert voting.client.post(f"/polls/{pid}/close", headers=admin).status_code == 200
    _expire_now(r, f"totals:{pid}", f"counted:{pid}", f"poll:{pid}")
    closed = httpx.get(f"{voting.base}/polls/{pid}/results").json()
    assert closed["source"] == "database" and closed["totals"] == {"A": 2, "B": 2, "C": 1}
