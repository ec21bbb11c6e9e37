"""A bucket's ``object_lock: {mode, retain_days}``: validated with file:line (versioning is required, no
expiry before the lock ends), carried in the store URL, stated in the plan, documented in the schema."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from stackwright.plan.builder import build_plan
from stackwright.resources import kind_of
from stackwright.spec import SpecError, load_system
from tests.fixtures.load import edited, line_of


def _lock(**extra: object):  # type: ignore[no-untyped-def]
    def edit(spec: dict) -> None:
        spec["resources"]["uploads"].update(object_lock={"mode": "COMPLIANCE", "retain_days": 365}, **extra)
    return edit


@pytest.mark.parametrize(("extra", "message", "line"), [
    ({"versioned": False, "replicate_to": []}, "has object_lock but is not versioned", "object_lock:"),
    ({"lifecycle": [{"after_days": 30, "storage_class": "EXPIRE"}]},
     "expires objects after 30 days but locks them for 365", "after_days: 30"),
])
def test_object_lock_is_validated_with_the_line(tmp_path: Path, extra: dict, message: str, line: str) -> None:
    path = edited("files", tmp_path, _lock(**extra))
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, line)}:" in str(info.value)


def test_bad_mode_and_days_are_refused(tmp_path: Path) -> None:
    for lock, message in (({"mode": "FOREVER", "retain_days": 1}, "COMPLIANCE"), ({"retain_days": 0}, "retain_days")):
        path = edited("files", tmp_path / message, lambda s, lock=lock: s["resources"]["uploads"].update(
            object_lock=lock))
        with pytest.raises(SpecError, match=message):
            load_system(path)


def test_the_lock_reaches_the_store_url_and_the_plan(tmp_path: Path) -> None:
    system = load_system(edited("files", tmp_path, _lock()))
    res = system.resources["uploads"]
    assert res.object_lock.mode == "COMPLIANCE" and res.object_lock.retain_days == 365

    class Ctx:
        state_dir = tmp_path / "state"
        backing: dict = {}

    url = asyncio.run(kind_of(res).provision_local("uploads", res, Ctx()))  # type: ignore[arg-type]
    assert url.endswith("/buckets/uploads?object_lock=COMPLIANCE&retain_days=365")
    eks = kind_of(res).eks_url(system, "prod", "uploads", res, region="us-east-1", hosted="us-east-1")
    assert eks.startswith("s3://") and eks.endswith("?object_lock=COMPLIANCE&retain_days=365")
    plan = build_plan(system)
    assert any("Object Lock (COMPLIANCE)" in a and "365 days" in a for a in plan.cost.assumptions)


def test_schema_documents_object_lock() -> None:
    from stackwright.spec.schema import json_schema

    defs = json_schema()["$defs"]
    assert "Object Lock" in defs["BucketResource"]["properties"]["object_lock"]["description"]
    assert "s3:BypassGovernanceRetention" in defs["ObjectLock"]["properties"]["mode"]["description"]
