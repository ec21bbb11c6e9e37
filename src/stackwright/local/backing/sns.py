"""A local SNS endpoint for the ``sms`` resource kind: moto's SNS API served on 127.0.0.1, wrapped so that
every SMS it accepts (``Publish`` with a ``PhoneNumber``) is also written as one JSON file to a folder,
where :func:`stackwright.local.smsbox.read_sms` reads it back. Nothing is sent to a phone.

Run as ``python -m stackwright.local.backing.sns --port PORT --dir FOLDER`` (the supervisor does). Needs
moto's server extras (flask, flask-cors), which the systems using SMS install with their extra.

The wrapper records from the HTTP exchange (the request's form fields, the MessageId in moto's answer),
not from moto's internals, so it keeps working across moto versions; only publishes moto accepted
(HTTP 200) are recorded, so a refused message is never "received".
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

_MESSAGE_ID = re.compile(rb"<MessageId>([^<]+)</MessageId>")


class LocalSNS:
    """Owns the folder of sent SMS; builds the command line for the supervisor to run."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder.resolve()
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "stackwright.local.backing.sns", "--port", str(self.port),
                "--dir", str(self.folder)]


def _attributes(form: dict[str, list[str]]) -> dict[str, str]:
    """The query protocol's ``MessageAttributes.entry.N.Name`` / ``.Value.StringValue`` pairs as a dict."""
    out = {}
    for key, names in form.items():
        m = re.fullmatch(r"MessageAttributes\.entry\.(\d+)\.Name", key)
        if m:
            value = form.get(f"MessageAttributes.entry.{m.group(1)}.Value.StringValue", [""])[0]
            out[names[0]] = value
    return out


def recording(app: Callable[..., Iterable[bytes]], folder: Path) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware: pass every request to ``app``; write each accepted SMS publish to ``folder`` as
    ``<ns since epoch>-<MessageId>.json`` holding ``{"message_id", "phone_number", "message",
    "attributes", "sent_at"}`` (``sent_at`` in Unix seconds). Written to a temporary name and renamed, so a
    reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads the body again
        form = parse_qs(body.decode("utf-8", "replace")) if body else {}
        if form.get("Action") != ["Publish"] or not form.get("PhoneNumber"):
            return app(environ, start_response)
        status: list[str] = []

        def capture(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(s)
            return start_response(s, headers, exc_info) if exc_info else start_response(s, headers)

        chunks = list(app(environ, capture))
        found = _MESSAGE_ID.search(b"".join(chunks))
        if status and status[0].startswith("200") and found:
            message_id = found.group(1).decode()
            record = {"message_id": message_id, "phone_number": form["PhoneNumber"][0],
                      "message": form.get("Message", [""])[0], "attributes": _attributes(form),
                      "sent_at": time.time()}
            path = folder / f"{time.time_ns()}-{message_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, ensure_ascii=False))
            os.replace(tmp, path)
        return chunks

    return wrapped


async def sns_ready(port: int) -> bool:
    """True once the endpoint answers HTTP."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except OSError:  # TimeoutError is an OSError
        return False
    try:
        writer.write(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 1.0)
        return status.startswith(b"HTTP/1.")
    except OSError:
        return False
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> None:
    """Serve the SNS API on 127.0.0.1:``--port``, recording SMS to ``--dir``, until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    # Imported here: moto's server pulls in flask, which only the process itself needs.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", args.port, recording(app, args.dir), threaded=True)


if __name__ == "__main__":
    main()
