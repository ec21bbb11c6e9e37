"""Permissions: roles inherited from folders, sharing with users and groups, immediate revocation, and a
second user trying every route on the first user's ids (IDOR): none succeeds, and nothing leaks existence."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import httpx
import pytest

from .conftest import Files

pytestmark = pytest.mark.integration


def _share(files: Files, owner: dict[str, str], rtype: str, rid: str, ptype: str, pid: str, role: str) -> None:
    resp = files.client.post("/shares", json={"resource_type": rtype, "resource_id": rid, "principal_type": ptype,
                                              "principal_id": pid, "role": role}, headers=owner)
    assert resp.status_code == 201, resp.text


def test_folder_roles_are_inherited_and_revocation_is_immediate(files: Files) -> None:
    _, alice = files.user("alice")
    bob_id, bob = files.user("bob")
    top = files.client.post("/folders", json={"name": "Team"}, headers=alice).json()
    inner = files.client.post("/folders", json={"name": "Specs", "parent_id": top["id"]}, headers=alice).json()
    doc = files.upload(alice, b"the spec", name="spec.txt", folder_id=inner["id"])
    assert files.client.get(f"/files/{doc['id']}", headers=bob).status_code == 404

    _share(files, alice, "folder", top["id"], "user", bob_id, "viewer")
    seen = files.client.get(f"/files/{doc['id']}", headers=bob)
    assert seen.status_code == 200 and seen.json()["role"] == "viewer"
    assert files.client.get(f"/files/{doc['id']}/content", headers=bob).content == b"the spec"
    # A viewer reads but does not write: 403 (they know it exists), not 404.
    assert files.client.patch(f"/files/{doc['id']}", json={"name": "mine.txt"}, headers=bob).status_code == 403
    up = files.client.post("/files", params={"name": "b.txt", "folder_id": inner["id"]}, content=b"b", headers=bob)
    assert up.status_code == 403

    _share(files, alice, "folder", top["id"], "user", bob_id, "editor")  # sharing again changes the role
    up = files.client.post("/files", params={"name": "b.txt", "folder_id": inner["id"]}, content=b"b", headers=bob)
    assert up.status_code == 201
    # Bob's upload is his, inside Alice's folder: Alice (folder owner) reads it.
    assert files.client.get(f"/files/{up.json()['id']}", headers=alice).json()["role"] == "owner"

    gone = files.client.delete(f"/shares/folder/{top['id']}/user/{bob_id}", headers=alice)
    assert gone.status_code == 204
    # The very next request: no access, and no hint the file exists.
    assert files.client.get(f"/files/{doc['id']}", headers=bob).status_code == 404
    assert files.client.get(f"/files/{doc['id']}/content", headers=bob).status_code == 404


def test_group_shares_follow_membership(files: Files) -> None:
    _, alice = files.user("alice")
    carol_id, carol = files.user("carol")
    group = files.client.post("/groups", json={"name": "designers"}, headers=alice).json()
    assert files.client.post(f"/groups/{group['id']}/members", json={"user_id": carol_id},
                             headers=alice).status_code == 201
    f = files.upload(alice, b"mockup", name="mockup.txt")
    _share(files, alice, "file", f["id"], "group", group["id"], "viewer")
    assert files.client.get(f"/files/{f['id']}", headers=carol).status_code == 200
    shared = files.client.get("/files", headers=carol).json()["files"]
    assert [x["id"] for x in shared] == [f["id"]]
    assert files.client.delete(f"/groups/{group['id']}/members/{carol_id}", headers=alice).status_code == 204
    assert files.client.get(f"/files/{f['id']}", headers=carol).status_code == 404


def test_only_owners_share(files: Files) -> None:
    _, alice = files.user("alice")
    bob_id, bob = files.user("bob")
    f = files.upload(alice, b"x")
    _share(files, alice, "file", f["id"], "user", bob_id, "editor")
    resp = files.client.post("/shares", json={"resource_type": "file", "resource_id": f["id"], "principal_type": "user",
                                              "principal_id": "mallory", "role": "owner"}, headers=bob)
    assert resp.status_code == 403


# ------------------------------------------------------------------------------------------------ IDOR


def _alice_world(files: Files) -> dict[str, Any]:
    """Everything a user can own: a folder tree, a file in it, a top-level image, a trashed file, a group."""
    alice_id, alice = files.user("alice")
    folder = files.client.post("/folders", json={"name": "private"}, headers=alice).json()
    doc = files.upload(alice, b"secret plans zanzibar", name="zanzibar.txt", folder_id=folder["id"],
                       tags="secret")
    trashed = files.upload(alice, b"old", name="old.txt")
    assert files.client.delete(f"/files/{trashed['id']}", headers=alice).status_code == 204
    group = files.client.post("/groups", json={"name": "alice-only"}, headers=alice).json()
    _share(files, alice, "file", doc["id"], "user", "dave", "viewer")
    return {"alice_id": alice_id, "alice": alice, "folder": folder["id"], "file": doc["id"],
            "trashed": trashed["id"], "group": group["id"]}


def _attempts(w: dict[str, Any], bob_file: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, route template, path, request kwargs) of every route, aimed at Alice's ids."""
    f, d, t, g = w["file"], w["folder"], w["trashed"], w["group"]
    fid, did, gid = "/files/{file_id}", "/folders/{folder_id}", "/groups/{group_id}"
    share = {"resource_type": "file", "resource_id": f, "principal_type": "user", "principal_id": "bob"}
    return [
        ("GET", fid, f"/files/{f}", {}),
        ("GET", fid + "/content", f"/files/{f}/content", {}),
        ("HEAD", fid + "/content", f"/files/{f}/content", {}),
        ("GET", fid + "/content", f"/files/{f}/content", {"headers": {"range": "bytes=0-3"}}),
        ("GET", fid + "/url", f"/files/{f}/url", {}),
        ("GET", fid + "/variants/{variant}", f"/files/{f}/variants/thumb", {}),
        ("HEAD", fid + "/variants/{variant}", f"/files/{f}/variants/thumb", {}),
        ("PATCH", fid, f"/files/{f}", {"json": {"name": "pwned.txt"}}),
        ("PATCH", fid, f"/files/{bob_file}", {"json": {"folder_id": d}}),  # move his file into her folder
        ("DELETE", fid, f"/files/{f}", {}),
        ("GET", "/files", "/files", {"params": {"folder_id": d}}),
        ("POST", "/files", "/files", {"params": {"name": "x.txt", "folder_id": d}, "content": b"planted"}),
        ("POST", "/trash/{file_id}/restore", f"/trash/{t}/restore", {}),
        ("DELETE", "/trash/{file_id}", f"/trash/{t}", {}),
        ("GET", did, f"/folders/{d}", {}),
        ("PATCH", did, f"/folders/{d}", {"json": {"name": "pwned"}}),
        ("DELETE", did, f"/folders/{d}", {}),
        ("POST", "/folders", "/folders", {"json": {"name": "planted", "parent_id": d}}),
        ("POST", "/shares", "/shares", {"json": {**share, "role": "owner"}}),
        ("POST", "/shares", "/shares", {"json": {**share, "resource_type": "folder", "resource_id": d,
                                                 "role": "viewer"}}),
        ("GET", "/shares", "/shares", {"params": {"resource_type": "file", "resource_id": f}}),
        ("GET", "/shares", "/shares", {"params": {"resource_type": "folder", "resource_id": d}}),
        ("DELETE", "/shares/{resource_type}/{resource_id}/{principal_type}/{principal_id}",
         f"/shares/file/{f}/user/dave", {}),
        ("GET", gid, f"/groups/{g}", {}),
        ("POST", gid + "/members", f"/groups/{g}/members", {"json": {"user_id": "bob"}}),
        ("DELETE", gid + "/members/{user_id}", f"/groups/{g}/members/{w['alice_id']}", {}),
    ]


# Routes that list the caller's own things: checked by content (none of Alice's ids), not by status.
LISTINGS = [("GET", "/files"), ("GET", "/folders"), ("GET", "/trash"), ("GET", "/shares/with-me"),
            ("GET", "/groups"), ("GET", "/search")]


def test_second_user_gets_nothing_on_every_route(files: Files) -> None:
    w = _alice_world(files)
    _, bob = files.user("bob")
    bob_file = files.upload(bob, b"bob's", name="bob.txt")["id"]
    attempts = _attempts(w, bob_file)
    succeeded = []
    for method, _, path, kw in attempts:
        resp = files.client.request(method, path, headers={**bob, **kw.pop("headers", {})}, **kw)
        if resp.status_code != 404:
            succeeded.append((method, path, resp.status_code, resp.text[:200]))
    assert succeeded == []  # every attempt: 404, the answer a non-existent id gets

    # A random id answers exactly like Alice's: existence does not leak.
    nobody = str(uuid.uuid4())
    assert files.client.get(f"/files/{nobody}", headers=bob).json()["detail"] == \
        files.client.get(f"/files/{w['file']}", headers=bob).json()["detail"]

    alice_ids = {w["file"], w["folder"], w["trashed"], w["group"]}
    for method, path in LISTINGS:
        params = {"q": "zanzibar"} if path == "/search" else {}
        body = files.client.request(method, path, params=params, headers=bob)
        assert body.status_code == 200, (path, body.text)
        assert not alice_ids & set(_ids(body.json())), path
    by_owner = files.client.get("/search", params={"owner": w["alice_id"]}, headers=bob)
    assert by_owner.status_code == 200, by_owner.text
    assert by_owner.json()["results"] == []

    # And Alice's things are as she left them.
    alice = w["alice"]
    mine = files.client.get(f"/files/{w['file']}", headers=alice).json()
    assert mine["name"] == "zanzibar.txt" and mine["folder_id"] == w["folder"]
    grants = files.client.get("/shares", params={"resource_type": "file", "resource_id": w["file"]},
                              headers=alice).json()["grants"]
    assert [(g["principal_id"], g["role"]) for g in grants] == [("dave", "viewer")]
    assert [x["id"] for x in files.client.get("/trash", headers=alice).json()["files"]] == [w["trashed"]]
    folder = files.client.get(f"/folders/{w['folder']}", headers=alice).json()
    assert folder["name"] == "private" and folder["folders"] == [] and [x["id"] for x in folder["files"]] == [w["file"]]
    assert files.client.get(f"/groups/{w['group']}", headers=alice).json()["members"] == [w["alice_id"]]


def test_every_route_is_in_the_idor_list(files: Files) -> None:
    """A route added later without an IDOR attempt fails here."""
    covered = {(m, template) for m, template, _, _ in _attempts(_fake_world(), "b")} | set(LISTINGS)
    declared = set()
    for service in ("file", "permission", "search"):
        # API docs are on the platform port (the application port answers 404 for them).
        spec = httpx.get(f"{files.state['services'][service][0]['platform_url']}/openapi.json").json()
        for path, ops in spec["paths"].items():
            declared |= {(m.upper(), path) for m in ops}
    missing = {(m, p) for m, p in declared if (m, p) not in covered and not _self_only(m, p)}
    assert missing == set()


def _self_only(method: str, path: str) -> bool:
    # Creating your own top-level things takes no id of anyone else's; /me is the caller's own settings (the
    # token's sub is the only key).
    return (method, path) in {("POST", "/groups"), ("GET", "/me/notifications"), ("PUT", "/me/notifications")}


def _fake_world() -> dict[str, Any]:
    return {k: k for k in ("file", "folder", "trashed", "group", "alice_id")}


def _ids(body: Any) -> list[str]:
    found: list[str] = []
    if isinstance(body, dict):
        for k, v in body.items():
            if k in ("id", "resource_id", "file_id", "folder_id", "group_id") and isinstance(v, str):
                found.append(v)
            found += _ids(v)
    elif isinstance(body, list):
        for v in body:
            found += _ids(v)
    return found


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", "..", ".", "nul\x00byte", "tab\there", "x" * 1000,
                                  "back\\slash", "   "])
def test_hostile_names_are_refused(files: Files, name: str) -> None:
    _, alice = files.user("alice")
    before = files.visible_objects("originals")
    resp = files.client.post("/files", params={"name": name}, content=b"data", headers=alice)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert files.visible_objects("originals") == before
    assert files.client.post("/folders", json={"name": name}, headers=alice).status_code == 422


def test_names_are_metadata_never_paths(files: Files) -> None:
    _, alice = files.user("alice")
    decomposed = unicodedata.normalize("NFD", "café ünïcode.txt")
    f = files.upload(alice, b"data", name=decomposed)
    assert f["name"] == unicodedata.normalize("NFC", decomposed)
    multipart = files.client.post("/files", files={"file": ("../../../escape.txt", b"x")}, headers=alice)
    assert multipart.status_code == 422  # a multipart filename is checked like any other name
    # Objects are keyed by id only: nothing outside files/<uuid> in the bucket, nothing outside the bucket.
    assert all(k.startswith("files/") and uuid.UUID(k.split("/")[1]) for k in files.visible_objects("originals"))
    assert not (files.bucket_dir("originals").parent / "escape.txt").exists()
    dl = files.client.get(f"/files/{f['id']}/content", headers=alice)
    assert "caf%C3%A9" in dl.headers["content-disposition"]
