"""Notifications through the local SMTP server: on share, and on upload complete; one mail per event."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest

from stackwright.local.mailbox import read_mailbox

from .conftest import Files

pytestmark = pytest.mark.integration


def mails_to(files: Files, user: str) -> list[EmailMessage]:
    return [m for m in read_mailbox(files.state_root, "files") if m["To"] == f"{user}@users.example.com"]


def test_upload_and_share_are_mailed_once(files: Files) -> None:
    alice_id, alice = files.user("alice")
    bob_id, _ = files.user("bob")
    f = files.upload(alice, b"quarterly numbers", name="q3.txt")
    upload = files.wait_until(lambda: mails_to(files, alice_id))
    assert upload[0]["Subject"] == 'Upload complete: "q3.txt"'
    assert upload[0]["From"] == "no-reply@files.example.com"
    assert f"/files/{f['id']}" in upload[0].get_content()

    resp = files.client.post("/shares", json={"resource_type": "file", "resource_id": f["id"], "principal_type": "user",
                                              "principal_id": bob_id, "role": "viewer"}, headers=alice)
    assert resp.status_code == 201
    shared = files.wait_until(lambda: mails_to(files, bob_id))
    assert shared[0]["Subject"] == f'{alice_id} shared "q3.txt" with you'
    assert "viewer role" in shared[0].get_content()
    # Let any redelivery happen (visibility timeout 3 s in tests): still one of each.
    time.sleep(4)
    assert len(mails_to(files, alice_id)) == 1 and len(mails_to(files, bob_id)) == 1
