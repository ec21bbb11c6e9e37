"""`stackwright demo voting`: open a poll, let many viewers vote at once (with duplicates and bad requests
mixed in), wait for the worker, and check that the tally equals the accepted votes exactly."""

from __future__ import annotations

import random
import time
import uuid
from functools import partial

import asyncpg
from rich.progress import Progress
from rich.table import Table

from stackwright.local.demokit import Client, DemoContext, Reply, bearer, run_concurrently, wait_for

OPTIONS = ["Aurora", "Borealis", "Cascade", "Dune"]


SIZE_HELP = "viewers who vote"
DEFAULT_SIZE = 10_000


async def run(ctx: DemoContext) -> bool:
    """Run the scenario against a running system; True when every accepted vote was counted exactly once."""
    state, console, votes, concurrency = ctx.state, ctx.console, ctx.size, ctx.concurrency
    base = state["gateway"]
    idp = ctx.idp()
    admin = bearer(idp.mint("demo-admin", ["admin"]))
    async with Client(base) as client:
        created = await client.post("/polls", json={"title": f"Demo poll {time.strftime('%H:%M:%S')}",
                                                    "options": OPTIONS}, headers=admin)
        if created.status != 201:
            raise RuntimeError(f"creating the poll failed: {created.status} {created.body}")
        poll = created.body
        opened = await client.post(f"/polls/{poll['id']}/open", headers=admin)
        if opened.status != 200:
            raise RuntimeError(f"opening the poll failed: {opened.status} {opened.body}")
    console.print(f"poll {poll['id']} is open; minting {votes:,} viewer tokens …")
    rng = random.Random(7)
    run_id = f"{int(time.time())}"
    tokens = ctx.mint_many([f"viewer-{run_id}-{i}" for i in range(votes)], ["viewer"], what="viewer tokens")
    url = f"/polls/{poll['id']}/votes"

    async def vote(token: str, option: str, client: Client) -> Reply:
        return await client.post(url, json={"option": option}, headers=bearer(token))

    # Malformed bodies come from viewers of their own: all from one voter, they tripped that viewer's rate
    # limit (429) and, now and then, its one real vote with it.
    senders = iter(ctx.mint_many([f"viewer-{run_id}-malformed-{i}" for i in range(votes // 200)], ["viewer"],
                                 what="tokens of malformed-vote senders"))

    async def malformed(client: Client) -> Reply:
        return await client.post(url, data=b'{"option": ', headers={**bearer(next(senders)),
                                                                     "content-type": "application/json"})

    async def anonymous(client: Client) -> Reply:
        return await client.post(url, json={"option": OPTIONS[0]})

    requests = [partial(vote, t, rng.choice(OPTIONS)) for t in tokens]
    duplicates = [partial(vote, rng.choice(tokens), rng.choice(OPTIONS)) for _ in range(votes // 20)]
    bad = ([partial(vote, rng.choice(tokens), "Nowhere") for _ in range(votes // 100)]
           + [malformed] * (votes // 200) + [anonymous] * (votes // 200))
    everything = requests + duplicates + bad
    rng.shuffle(everything)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("voting", total=len(everything))
        stats = await run_concurrently(base, everything, concurrency=concurrency,
                                       on_progress=lambda n: progress.advance(task, n))
    accepted = stats.statuses.get(202, 0)
    rate = stats.total / stats.elapsed_s
    console.print(f"sent {stats.total:,} requests in {stats.elapsed_s:.1f}s = {rate:,.0f} req/s"
                  f"; accepted {accepted:,} votes ({accepted / stats.elapsed_s:,.0f}/s); "
                  f"p50 {stats.percentile(50):.1f} ms, p99 {stats.percentile(99):.1f} ms")
    console.print("responses: " + ", ".join(f"{code}: {n:,}" for code, n in sorted(stats.statuses.items()))
                  + (f"; transport errors: {dict(stats.errors)}" if stats.errors else ""))

    async with Client(base) as client:
        async def counted() -> bool:
            return (await client.get(f"/polls/{poll['id']}/results")).body["total"] >= accepted

        began = time.monotonic()
        drained = await wait_for(counted, timeout_s=120, interval_s=0.5)
        result = (await client.get(f"/polls/{poll['id']}/results")).body
    console.print(f"worker caught up in {time.monotonic() - began:.1f}s" if drained else
                  "[red]worker did not catch up within 120 s")

    db_url = state["resources"]["db"]
    conn = await asyncpg.connect(db_url)
    try:
        in_db = await conn.fetchval("SELECT count(*) FROM votes WHERE poll_id = $1", uuid.UUID(poll["id"]))
    finally:
        await conn.close()

    table = Table(title=f"Final tally: {poll['title']}")
    table.add_column("option")
    table.add_column("votes", justify="right")
    for option, n in result["totals"].items():
        table.add_row(option, f"{n:,}")
    table.add_row("[b]total", f"[b]{result['total']:,}")
    console.print(table)
    expected_bad = len(bad) + len(duplicates)
    console.print(f"accepted (202): {accepted:,}   counted (results): {result['total']:,}   "
                  f"stored (Postgres): {in_db:,}   rejected as expected: {stats.total - accepted:,} "
                  f"of {expected_bad:,} bad or duplicate requests")
    ok = result["total"] == accepted == in_db and not stats.errors and stats.statuses.get(500, 0) == 0
    if not ok:
        console.print("[red]MISMATCH: the tally does not equal the accepted votes")
    return ok
