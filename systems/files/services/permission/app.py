"""Permission service: who may do what (RBAC on files and folders), sharing, and groups.

Roles: ``owner`` > ``editor`` > ``viewer``. A grant on a folder applies to everything below it. Grants are
rows in Postgres and every service reads them in the request's own query (``file_rank``/``folder_rank``),
so a revocation holds from the next request on: there is no permission cache to go stale.

Only an owner (the creator, or someone granted ``owner``) shares or revokes. A resource the caller cannot
read answers 404 (the same as one that does not exist); a group the caller does not own or belong to too.
Sharing queues one notification per user reached (each member of a group).

``/me/notifications`` holds the caller's own notification choices: a phone number (any common notation,
checked with libphonenumber and stored as E.164) and which kinds (``share``, ``upload_complete``) also
go out as SMS. The service that raises an event reads them in the event's transaction and puts the phone in
the notification (``sms_to``), so the choice in force when the event happened is the one applied.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Annotated, Any, Literal

import phonenumbers
from fastapi import Depends, Path, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from stackwright.runtime import Principal, Problem, Service, problem_responses
from stackwright.runtime.outbox import Outbox

svc = Service(title="permission")
db = svc.postgres("db")
notifications = svc.queue("notifications")
# Share notifications commit with the grant (see stackwright.runtime.outbox): a kill in between loses no mail.
outbox = Outbox(db, {"notifications": notifications})
svc.background(outbox.run)
app = svc.app
Caller = Annotated[Principal, Depends(svc.principal())]

RANKS = {"viewer": 1, "editor": 2, "owner": 3}
ROLE_NAMES = {v: k for k, v in RANKS.items()}
# A user id is what the identity provider puts in ``sub``: printable, no spaces or control characters.
USER_ID = r"^[A-Za-z0-9@._:|+-]{1,200}$"
ResourceType = Literal["file", "folder"]


def _printable(v: str) -> str:
    v = unicodedata.normalize("NFC", v).strip()
    if not v or re.search(r"[\x00-\x1f\x7f]", v):
        raise ValueError("must be printable text")
    return v


class NewShare(BaseModel):
    resource_type: ResourceType
    resource_id: uuid.UUID
    principal_type: Literal["user", "group"]
    principal_id: str = Field(pattern=USER_ID, description="a user's sub, or a group's id")
    role: Literal["owner", "editor", "viewer"]


class NewGroup(BaseModel):
    name: str = Field(min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _printable(v)


class NewMember(BaseModel):
    user_id: str = Field(pattern=USER_ID)


class SmsChoices(BaseModel):
    share: bool = False
    upload_complete: bool = False


class NotificationSettings(BaseModel):
    """``phone``: international format with the country code (``+1 415 555 2671``), or null for none;
    ``sms``: the notification kinds also sent as SMS (they need a phone)."""

    phone: str | None = Field(None, max_length=40)
    sms: SmsChoices = SmsChoices()

    @field_validator("phone")
    @classmethod
    def _e164(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            number = phonenumbers.parse(v, None)  # no default region: the country code must be given
        except phonenumbers.NumberParseException:
            raise ValueError("not a phone number with a country code (+<country> <number>)") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number")
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    @model_validator(mode="after")
    def _needs_phone(self) -> NotificationSettings:
        if self.phone is None and (self.sms.share or self.sms.upload_complete):
            raise ValueError("SMS notifications need a phone number")
        return self


def settings_json(row: Any) -> dict[str, Any]:
    if row is None:
        return NotificationSettings().model_dump()
    return {"phone": row["phone"], "sms": {"share": row["sms_share"], "upload_complete": row["sms_upload"]}}


@app.get("/me/notifications", responses=problem_responses(401))
async def get_notifications(who: Caller) -> dict[str, Any]:
    """The caller's notification settings (defaults when never set: no phone, email only)."""
    return settings_json(await db.pool.fetchrow("SELECT * FROM notification_settings WHERE user_id = $1", who.sub))


@app.put("/me/notifications", responses=problem_responses(401, 422))
async def put_notifications(new: NotificationSettings, who: Caller) -> dict[str, Any]:
    """Replace the caller's notification settings; the phone comes back in E.164."""
    row = await db.pool.fetchrow(
        """INSERT INTO notification_settings (user_id, phone, sms_share, sms_upload) VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id) DO UPDATE SET phone = EXCLUDED.phone, sms_share = EXCLUDED.sms_share,
               sms_upload = EXCLUDED.sms_upload, updated_at = now()
           RETURNING *""", who.sub, new.phone, new.sms.share, new.sms.upload_complete)
    return settings_json(row)


async def rank_of(user: str, resource_type: str, resource_id: uuid.UUID) -> tuple[int, str]:
    """The caller's rank on the resource and its name; 404 if they cannot read it (or it does not exist)."""
    if resource_type == "file":
        row = await db.pool.fetchrow(
            "SELECT name, file_rank($1, id) AS rank FROM files WHERE id = $2 AND deleted_at IS NULL",
            user, resource_id)
    else:
        row = await db.pool.fetchrow("SELECT name, folder_rank($1, id) AS rank FROM folders WHERE id = $2",
                                     user, resource_id)
    if row is None or row["rank"] < 1:
        raise Problem(404, f"no such {resource_type}")
    return int(row["rank"]), str(row["name"])


async def owned_group(user: str, group_id: uuid.UUID, *, member_ok: bool = False) -> Any:
    row = await db.pool.fetchrow(
        """SELECT g.*, EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = g.id AND m.user_id = $1) AS member
           FROM groups g WHERE g.id = $2""", user, group_id)
    if row is None or not (row["owner_id"] == user or (member_ok and row["member"])):
        raise Problem(404, "no such group")
    return row


def grant_json(row: Any) -> dict[str, Any]:
    return {"resource_type": row["resource_type"], "resource_id": str(row["resource_id"]),
            "principal_type": row["principal_type"], "principal_id": row["principal_id"], "role": row["role"],
            "granted_by": row["granted_by"], "created_at": row["created_at"].isoformat()}


@app.post("/shares", status_code=201, responses=problem_responses(403, 404, 422))
async def share(new: NewShare, who: Caller) -> dict[str, Any]:
    """Give a user or group a role on a file or folder (owners only); sharing again changes the role."""
    rank, name = await rank_of(who.sub, new.resource_type, new.resource_id)
    if rank < 3:
        raise Problem(403, "only an owner shares")
    recipients: list[str]
    if new.principal_type == "group":
        try:
            group_id = uuid.UUID(new.principal_id)
        except ValueError:
            raise Problem(404, "no such group") from None
        if await db.pool.fetchval("SELECT 1 FROM groups WHERE id = $1", group_id) is None:
            raise Problem(404, "no such group")
        principal = str(group_id)
        recipients = [r["user_id"] for r in await db.pool.fetch(
            "SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id", group_id)]
    else:
        principal = new.principal_id
        recipients = [principal]
    event = uuid.uuid4().hex
    async with db.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO grants (resource_type, resource_id, principal_type, principal_id, role, granted_by)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (resource_type, resource_id, principal_type, principal_id)
               DO UPDATE SET role = EXCLUDED.role, granted_by = EXCLUDED.granted_by, created_at = now()
               RETURNING *""", new.resource_type, new.resource_id, new.principal_type, principal, new.role, who.sub)
        # Phones of the recipients who opted into share SMS, read with the grant: the event carries them.
        phones = {r["user_id"]: r["phone"] for r in await conn.fetch(
            "SELECT user_id, phone FROM notification_settings WHERE user_id = ANY($1::text[]) AND sms_share",
            recipients)}
        await outbox.add_many(conn, [
            ("notifications", {"event_id": f"share:{event}:{user}", "kind": "share", "to_user": user,
                               "resource_type": new.resource_type, "resource_id": str(new.resource_id),
                               "name": name, "role": new.role, "by": who.sub,
                               **({"sms_to": phones[user]} if user in phones else {})})
            for user in recipients if user != who.sub])
    outbox.kick()
    return grant_json(row)


@app.get("/shares", responses=problem_responses(404))
async def list_shares(resource_type: ResourceType, resource_id: uuid.UUID, who: Caller) -> dict[str, Any]:
    """The grants on one file or folder (anyone who can read it sees who else can)."""
    rank, _ = await rank_of(who.sub, resource_type, resource_id)
    rows = await db.pool.fetch(
        """SELECT * FROM grants WHERE resource_type = $1 AND resource_id = $2
           ORDER BY principal_type, principal_id""", resource_type, resource_id)
    return {"role": ROLE_NAMES[min(rank, 3)], "grants": [grant_json(r) for r in rows]}


@app.get("/shares/with-me", responses=problem_responses(401))
async def shared_with_me(who: Caller) -> dict[str, Any]:
    """Files and folders shared with the caller, directly or through a group."""
    rows = await db.pool.fetch(
        """SELECT g.* FROM grants g
           WHERE (g.principal_type = 'user' AND g.principal_id = $1) OR (g.principal_type = 'group' AND
                  g.principal_id IN (SELECT m.group_id::text FROM group_members m WHERE m.user_id = $1))
           ORDER BY g.created_at DESC LIMIT 500""", who.sub)
    return {"grants": [grant_json(r) for r in rows]}


@app.delete("/shares/{resource_type}/{resource_id}/{principal_type}/{principal_id}", status_code=204,
            responses=problem_responses(403, 404))
async def revoke(resource_type: ResourceType, resource_id: uuid.UUID, principal_type: Literal["user", "group"],
                 principal_id: Annotated[str, Path(pattern=USER_ID)], who: Caller) -> Response:
    """Remove a grant (owners only). Takes effect on the next request of the user it named."""
    rank, _ = await rank_of(who.sub, resource_type, resource_id)
    if rank < 3:
        raise Problem(403, "only an owner revokes")
    done = await db.pool.execute(
        """DELETE FROM grants WHERE resource_type = $1 AND resource_id = $2 AND principal_type = $3
           AND principal_id = $4""", resource_type, resource_id, principal_type, principal_id)
    if done == "DELETE 0":
        raise Problem(404, "no such grant")
    return Response(status_code=204)


@app.post("/groups", status_code=201, responses=problem_responses(422))
async def create_group(new: NewGroup, who: Caller) -> dict[str, Any]:
    """A group owned by the caller (who is also its first member)."""
    gid = uuid.uuid4()
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO groups (id, name, owner_id) VALUES ($1, $2, $3)", gid, new.name, who.sub)
        await conn.execute("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)", gid, who.sub)
    return {"id": str(gid), "name": new.name, "owner": who.sub, "members": [who.sub]}


@app.get("/groups", responses=problem_responses(401))
async def list_groups(who: Caller) -> dict[str, Any]:
    """Groups the caller owns or belongs to."""
    rows = await db.pool.fetch(
        """SELECT g.* FROM groups g WHERE g.owner_id = $1 OR g.id IN
           (SELECT group_id FROM group_members WHERE user_id = $1) ORDER BY g.name, g.id""", who.sub)
    return {"groups": [{"id": str(r["id"]), "name": r["name"], "owner": r["owner_id"]} for r in rows]}


@app.get("/groups/{group_id}", responses=problem_responses(404))
async def get_group(group_id: uuid.UUID, who: Caller) -> dict[str, Any]:
    """A group and its members (to its owner and members)."""
    row = await owned_group(who.sub, group_id, member_ok=True)
    members = await db.pool.fetch("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id", group_id)
    return {"id": str(row["id"]), "name": row["name"], "owner": row["owner_id"],
            "members": [m["user_id"] for m in members]}


@app.post("/groups/{group_id}/members", status_code=201, responses=problem_responses(404, 422))
async def add_member(group_id: uuid.UUID, new: NewMember, who: Caller) -> dict[str, Any]:
    """Add a user to a group the caller owns."""
    await owned_group(who.sub, group_id)
    await db.pool.execute("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                          group_id, new.user_id)
    return {"group_id": str(group_id), "user_id": new.user_id}


@app.delete("/groups/{group_id}/members/{user_id}", status_code=204, responses=problem_responses(404))
async def remove_member(group_id: uuid.UUID, user_id: Annotated[str, Path(pattern=USER_ID)],
                        who: Caller) -> Response:
    """Remove a user from a group the caller owns: what the group was granted stops applying to them."""
    await owned_group(who.sub, group_id)
    await db.pool.execute("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2", group_id, user_id)
    return Response(status_code=204)
