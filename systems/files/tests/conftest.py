"""Bring the file platform up once per test session: real Postgres, Redis, every service, the gateway.

The session runs a private copy of ``systems/files`` whose spec differs only where a test needs a smaller
number: a 280 MiB upload limit (so 413 past the limit streams seconds, not a 2 GiB body), short queue
visibility timeouts (a job held by a killed worker comes back in seconds) and a 2 s sweep of upload leftovers.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import SystemHandle, system_up

from stackwright.spec import load_system

SYSTEM_DIR = Path(__file__).resolve().parents[1]
TEST_MAX_UPLOAD = 280 << 20


def private_copy(dest: Path) -> Path:
    """Copy the system (spec, services, migrations) to ``dest`` with the test limits; returns the spec path."""
    shutil.copytree(SYSTEM_DIR, dest, ignore=shutil.ignore_patterns("tests", "__pycache__", "bench*", "*.pyc"))
    spec_path = dest / "system.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["services"]["file"]["env"]["MAX_UPLOAD_BYTES"] = str(TEST_MAX_UPLOAD)
    # Leftovers of killed uploads are swept every 2 s once an hour old (tests age them with os.utime).
    spec["services"]["file"]["env"].update(UPLOAD_SWEEP_S="2", LEFTOVER_AGE_S="3600")
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path


class Files(SystemHandle):
    """Handle on the running system: tokens, a gateway client, direct service URLs, the databases."""

    def token(self, sub: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.idp.mint(sub)}"}

    def user(self, prefix: str = "u") -> tuple[str, dict[str, str]]:
        """A fresh user id and its auth header (tests never share users, so they never see each other's files)."""
        sub = f"{prefix}-{uuid.uuid4().hex[:8]}"
        return sub, self.token(sub)

    def bucket_dir(self, name: str) -> Path:
        return self.state_root / "files" / "buckets" / name

    def visible_objects(self, bucket: str) -> list[str]:
        """Object keys a reader can see (temp files of unfinished writes are dot files)."""
        root = self.bucket_dir(bucket)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def upload(self, headers: dict[str, str], data: bytes, name: str = "f.bin", **params: str) -> dict[str, Any]:
        resp = self.client.post("/files", params={"name": name, **params}, content=data, headers=headers)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def sql(self, query: str, *args: Any, resource: str = "db") -> list[Any]:
        return self.resource_sql(resource, query, *args)


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    spec = private_copy(tmp_path_factory.mktemp("system") / "files")
    root = tmp_path_factory.mktemp("state")
    with system_up(spec, root, extra_args=["--visibility-timeout", "variant-jobs=3",
                                           "--visibility-timeout", "notifications=3",
                                           "--visibility-timeout", "tasks=3"]) as state:
        yield Files(load_system(spec), state, root, client_timeout_s=60)
