"""imp-frontend: the page that records from the microphone or uploads a WAV file, streams it to ``/asr``
(16 kHz PCM16, vosk-server's protocol) and shows the live transcript and the user's usage (``/account/usage``)."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse

from stackwright.runtime import Problem, Service

svc = Service(title="imp-frontend")
app = svc.app
INDEX = Path(__file__).parent / "static" / "index.html"


@app.get("/")
async def index() -> FileResponse:
    return FileResponse(INDEX, media_type="text/html")


@app.get("/{path:path}", include_in_schema=False)
async def not_found(path: str) -> None:
    raise Problem(404, "no such page")
