"""Web front end: the viewer page (static). In production it is served through the CDN."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, HTMLResponse

from stackwright.runtime import Problem, Service

svc = Service(title="web")
app = svc.app
INDEX = Path(__file__).parent / "static" / "index.html"


@app.get("/", response_class=HTMLResponse)
async def index() -> FileResponse:
    return FileResponse(INDEX, media_type="text/html")


@app.get("/{path:path}", include_in_schema=False)
async def not_found(path: str) -> None:
    raise Problem(404, "no such page")
