"""The writer endpoint forwards bytes to the current primary, and a repoint cuts the open connections and sends
new ones to the promoted server (real sockets, two tiny servers that name themselves)."""

from __future__ import annotations

import asyncio

from stackwright.local.writer_endpoint import WriterEndpoint


async def _server(name: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(name + b":" + data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _ask(port: int, what: bytes) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(what)
    await writer.drain()
    return await asyncio.wait_for(reader.read(100), 5), reader, writer


async def test_repoint_moves_new_connections_and_cuts_open_ones() -> None:
    old, new = await _server(b"old"), await _server(b"new")
    endpoint = WriterEndpoint(_port(old))
    await endpoint.start()
    try:
        answer, reader, writer = await _ask(endpoint.port, b"x")
        assert answer == b"old:x"
        endpoint.repoint(_port(new), "eu-west-1")
        # The open connection is cut: its reader sees the end, not an answer from either server.
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
        answer, _r, again = await _ask(endpoint.port, b"y")
        assert answer == b"new:y" and endpoint.target_region == "eu-west-1"
        again.close()
    finally:
        await endpoint.close()
        old.close()
        new.close()


async def test_a_dead_target_closes_the_client_connection() -> None:
    gone = await _server(b"gone")
    port = _port(gone)
    gone.close()
    await gone.wait_closed()
    endpoint = WriterEndpoint(port)
    await endpoint.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
    finally:
        await endpoint.close()


async def test_hold_keeps_new_connections_waiting_until_the_repoint() -> None:
    old, new = await _server(b"old"), await _server(b"new")
    endpoint = WriterEndpoint(_port(old))
    await endpoint.start()
    try:
        _answer, reader, writer = await _ask(endpoint.port, b"x")
        endpoint.hold()
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # the fenced primary's connection is cut
        writer.close()
        waiting = asyncio.ensure_future(_ask(endpoint.port, b"y"))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held: neither forwarded to the old server nor refused
        endpoint.repoint(_port(new), "us-west-2")
        answer, _r, again = await asyncio.wait_for(waiting, 5)
        assert answer == b"new:y"
        again.close()
    finally:
        await endpoint.close()
        old.close()
        new.close()


async def _ended(reader: asyncio.StreamReader) -> bool:
    """The connection ended without an answer: an orderly end or a reset (what a cut sends)."""
    try:
        return await asyncio.wait_for(reader.read(100), 5) == b""
    except ConnectionResetError:
        return True


async def test_a_cut_resets_and_refuses_until_healed() -> None:
    server = await _server(b"primary")
    endpoint = WriterEndpoint(_port(server))
    await endpoint.start()
    try:
        _answer, reader, writer = await _ask(endpoint.port, b"x")
        endpoint.cut()
        assert await _ended(reader)
        writer.close()
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer2.write(b"z")
        assert await _ended(reader2)  # closed at once, nothing forwarded
        writer2.close()
        endpoint.heal()
        answer, _r, again = await _ask(endpoint.port, b"w")
        assert answer == b"primary:w"
        again.close()
    finally:
        await endpoint.close()
        server.close()
