"""SMS notifications through the local SNS endpoint: a user's phone and opt-ins (``/me/notifications``),
exactly one SMS per event for opted-in users (also when the event is delivered twice), none for the rest."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from stackwright.local.smsbox import read_sms

from .conftest import Files

pytestmark = pytest.mark.integration


def texts_to(files: Files, phone: str) -> list[dict[str, Any]]:
    return [s for s in read_sms(files.state_root, "files") if s["phone_number"] == phone]


def test_settings_are_validated_and_normalised(files: Files) -> None:
    _, headers = files.user("dora")
    resp = files.client.get("/me/notifications", headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"phone": None, "sms": {"share": False, "upload_complete": False}}
    for bad in ({"phone": "12345"}, {"phone": "+1 555"}, {"phone": "+44 7700 900123"},  # last: a reserved drama number
                {"phone": "call me"}, {"sms": {"share": True}}, {"phone": 14155552671}):
        resp = files.client.put("/me/notifications", json=bad, headers=headers)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    resp = files.client.put("/me/notifications", json={"phone": "+1 (415) 555-2671", "sms": {"share": True}},
                            headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"phone": "+14155552671", "sms": {"share": True, "upload_complete": False}}
    assert files.client.get("/me/notifications", headers=headers).json()["phone"] == "+14155552671"
    assert files.client.put("/me/notifications", json={}, headers={}).status_code == 401


def test_opted_in_users_get_one_sms_per_event_and_others_none(files: Files) -> None:
    alice_id, alice = files.user("alice")
    bob_id, bob = files.user("bob")
    carol_id, carol = files.user("carol")
    # Numbers no other test of the session uses (its SNS endpoint keeps every SMS of every test).
    alice_phone, bob_phone, carol_phone = "+12025550143", "+14155550123", "+13125550188"
    for headers, settings in ((alice, {"phone": alice_phone, "sms": {"upload_complete": True}}),
                              (bob, {"phone": bob_phone, "sms": {"share": True}}),
                              (carol, {"phone": carol_phone})):  # a phone, but no SMS opt-in
        assert files.client.put("/me/notifications", json=settings, headers=headers).status_code == 200

    f = files.upload(alice, b"quarterly numbers", name="q3-sms.txt")
    upload = files.wait_until(lambda: texts_to(files, alice_phone))
    assert upload[0]["message"] == f'Upload complete: "q3-sms.txt" /files/{f["id"]}'
    assert upload[0]["attributes"]["AWS.SNS.SMS.SMSType"] == "Transactional"
    for user in (bob_id, carol_id):
        resp = files.client.post("/shares", json={"resource_type": "file", "resource_id": f["id"],
                                                  "principal_type": "user", "principal_id": user, "role": "viewer"},
                                 headers=alice)
        assert resp.status_code == 201
    shared = files.wait_until(lambda: texts_to(files, bob_phone))
    assert shared[0]["message"] == f'{alice_id} shared "q3-sms.txt" with you (viewer): /files/{f["id"]}'

    # An event delivered twice (the same body queued again, as after a worker died before its ack), then a
    # fresh event behind it: once the fresh one is texted, the duplicate was handled too.
    dup = {"event_id": f"share:sms-test:{bob_id}", "kind": "share", "to_user": bob_id, "resource_type": "file",
           "resource_id": f["id"], "name": "again.txt", "role": "editor", "by": alice_id, "sms_to": bob_phone}
    sentinel = {**dup, "event_id": f"share:sms-test-2:{bob_id}", "name": "sentinel.txt"}
    for body in (dup, dup, sentinel):
        files.sql("INSERT INTO outbox (queue, body) VALUES ('notifications', $1::jsonb)", json.dumps(body))
    files.wait_until(lambda: [s for s in texts_to(files, bob_phone) if "sentinel.txt" in s["message"]])
    time.sleep(4)  # and past one visibility timeout (3 s in tests), for any redelivery
    messages = [s["message"] for s in texts_to(files, bob_phone)]
    assert len(messages) == 3 and sum("again.txt" in m for m in messages) == 1, messages
    assert len(texts_to(files, alice_phone)) == 1
    assert texts_to(files, carol_phone) == []
