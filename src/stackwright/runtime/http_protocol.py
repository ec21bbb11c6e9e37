"""uvicorn's httptools HTTP/1.1 protocol, with request-body pieces handed to the app without two copies.

uvicorn collects each request's body bytes in a ``bytearray`` (``cycle.body += body``) and gives them to the
app as ``bytes(cycle.body)``: every byte of a request body is copied twice more after the parser has made its
own ``bytes`` of it. For an upload streaming through the edge gateway into the file service that is four
copies of every byte in user space, in two processes (py-spy: ``memcpy`` and ``brk`` under ``on_body`` were a
third of the gateway's busy samples during 64 MiB uploads). Here the first piece of a message is kept as the
parser's ``bytes`` object itself, and ``bytes()`` of a ``bytes`` object is that object: a message made of one
socket read (the usual case: uvicorn stops reading once more than 64 KiB are waiting) reaches the app without
a copy. A second piece before the app's next ``receive()`` falls back to uvicorn's ``bytearray`` (so many tiny
pieces are appended, never re-concatenated). Flow control, disconnects and pipelining are uvicorn's own.

Used by every server the platform runs (``runtime.serve`` for the services, the local gateway) through
``uvicorn.Config(http=LeanBodyHttpToolsProtocol)``.
"""

from __future__ import annotations

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["LeanBodyHttpToolsProtocol"]


class LeanBodyHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose ``on_body`` keeps a message's first body piece as is (see the module)."""

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        held = cycle.body
        if not held:
            # receive() hands out bytes(cycle.body) and resets it to a new bytearray: for this bytes object
            # that is the object itself.
            cycle.body = body  # type: ignore[assignment]
        elif isinstance(held, bytes):
            cycle.body = bytearray(held)
            cycle.body += body
        else:
            held += body
        # Read through the module, as uvicorn's own on_body does: a setting of the limit there holds here too.
        if len(cycle.body) > httptools_impl.HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()
