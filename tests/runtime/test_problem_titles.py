"""Every problem+json answer carries its status's phrase as the title, never a bare "Error": files' 416 for a
backwards Range and fastapi-app's 412 for a stale If-Match both read {"title": "Error"} before."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import HTTPException

from stackwright.runtime import Problem, Service, Settings
from stackwright.runtime.problems import problem_bytes, problem_responses

# Statuses a service raises that the old table of titles did not name, and some it did.
TITLES = {
    402: "Payment Required", 409: "Conflict", 410: "Gone", 412: "Precondition Failed",
    413: "Content Too Large", 416: "Range Not Satisfiable", 418: "I'm a Teapot", 422: "Unprocessable Content",
    423: "Locked", 428: "Precondition Required", 501: "Not Implemented", 507: "Insufficient Storage",
}


def _service() -> Service:
    svc = Service(settings=Settings.from_env({"SERVICE_NAME": "titles", "SYSTEM_NAME": "test"}))

    @svc.app.get("/problem/{status}")
    async def problem(status: int) -> None:
        raise Problem(status, "raised as a Problem")

    @svc.app.get("/http/{status}")
    async def http_exception(status: int) -> None:
        raise HTTPException(status)  # Starlette's detail is the phrase; the title says it, so no detail

    return svc


async def _answers(paths: list[str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=_service().app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return [await client.get(path) for path in paths]


@pytest.mark.parametrize("kind", ["problem", "http"])
def test_every_status_is_titled_by_its_phrase(kind: str) -> None:
    answers = asyncio.run(_answers([f"/{kind}/{status}" for status in TITLES]))
    got = {resp.status_code: (resp.headers["content-type"], resp.json()["title"]) for resp in answers}
    assert got == {status: ("application/problem+json", title) for status, title in TITLES.items()}
    if kind == "http":
        assert all("detail" not in resp.json() for resp in answers)


def test_raw_problems_and_openapi_descriptions_use_the_phrase_too() -> None:
    assert b'"title": "Range Not Satisfiable"' in problem_bytes(416, "bytes=100-50")
    assert problem_responses(412, 599)[412]["description"] == "Precondition Failed"
    assert problem_responses(412, 599)[599]["description"] == "Server Error"  # no phrase: its class
