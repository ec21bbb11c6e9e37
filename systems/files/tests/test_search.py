"""Search by name, tags, type, owner and text content; results filtered by permission; rebuilt when empty."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stackwright.local.chaos import kill_and_recover

from .conftest import Files

pytestmark = pytest.mark.integration


def ids(files: Files, headers: dict[str, str], **params: str) -> set[str]:
    resp = files.client.get("/search", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return {r["id"] for r in resp.json()["results"]}


def indexed(files: Files, headers: dict[str, str], file_id: str, **params: str) -> bool:
    return file_id in ids(files, headers, **params)


def test_search_by_every_field(files: Files) -> None:
    alice_id, alice = files.user("alice")
    word = f"quux{uuid.uuid4().hex[:6]}"
    text = files.upload(alice, f"minutes of the meeting about {word} budgets\n".encode(), name="minutes.txt",
                        tags="Meeting,q3")
    png = files.client.post("/files", params={"name": f"{word}-diagram.png"}, headers=alice, content=bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).json()
    files.wait_until(lambda: indexed(files, alice, text["id"], q=word) and indexed(files, alice, png["id"], q=word))
    assert ids(files, alice, q=word) == {text["id"], png["id"]}  # content of one, name of the other
    assert ids(files, alice, q=word, type="image") == {png["id"]}
    assert ids(files, alice, q=word, type="text/plain") == {text["id"]}
    assert ids(files, alice, tag="meeting", owner=alice_id) == {text["id"]}
    assert ids(files, alice, owner=alice_id) == {text["id"], png["id"]}
    assert ids(files, alice, q="minutes", owner=alice_id) == {text["id"]}

    # Trashed: gone from results at once (the record filters, whatever the index still holds).
    assert files.client.delete(f"/files/{png['id']}", headers=alice).status_code == 204
    assert ids(files, alice, q=word) == {text["id"]}
    # Renamed: found by the new name once the index follows.
    files.client.patch(f"/files/{text['id']}", json={"name": f"renamed-{word}-zz.txt"}, headers=alice)
    files.wait_until(lambda: indexed(files, alice, text["id"], q=f"renamed-{word}-zz"))


def test_results_follow_shares(files: Files) -> None:
    _, alice = files.user("alice")
    bob_id, bob = files.user("bob")
    word = f"shared{uuid.uuid4().hex[:6]}"
    f = files.upload(alice, f"{word} report".encode(), name="report.txt")
    files.wait_until(lambda: indexed(files, alice, f["id"], q=word))
    assert ids(files, bob, q=word) == set()
    files.client.post("/shares", json={"resource_type": "file", "resource_id": f["id"], "principal_type": "user",
                                       "principal_id": bob_id, "role": "viewer"}, headers=alice)
    assert ids(files, bob, q=word) == {f["id"]}
    files.client.delete(f"/shares/file/{f['id']}/user/{bob_id}", headers=alice)
    assert ids(files, bob, q=word) == set()


def test_empty_index_is_rebuilt_from_postgres(files: Files) -> None:
    _, alice = files.user("alice")
    word = f"rebuild{uuid.uuid4().hex[:6]}"
    f = files.upload(alice, f"{word} text".encode(), name="r.txt")
    files.wait_until(lambda: indexed(files, alice, f["id"], q=word))
    live = files.sql("SELECT count(*) AS n FROM files WHERE deleted_at IS NULL")[0]["n"]
    files.sql("TRUNCATE docs", resource="index")
    assert ids(files, alice, q=word) == set()
    asyncio.run(kill_and_recover("files", files.state_root, "search"))
    # Every live file comes back, not just this one (the rebuild walks the files table in id order).
    files.wait_until(lambda: files.sql("SELECT count(*) AS n FROM docs", resource="index")[0]["n"] >= live,
                     timeout_s=60)
    assert indexed(files, alice, f["id"], q=word)
