"""The dashboard answers only requests addressed to this machine: a web page that reaches 127.0.0.1 through a
DNS name of its own (DNS rebinding) cannot read a local run's logs or state."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from stackwright.local.dashboard.app import create_app
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("host", "status"), [("127.0.0.1:9", 200), ("localhost", 200), ("evil.example", 400)])
async def test_only_local_host_names_are_served(tmp_path: Path, host: str, status: int) -> None:
    app = create_app(load_system("fastapi-app", root=ROOT), tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        resp = await client.get("/healthz", headers={"host": host})
    assert resp.status_code == status
