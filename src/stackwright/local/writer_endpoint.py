"""The local writer endpoint of a multi-region run: one TCP port that always leads to the current primary Postgres.

On EKS the services of every region reach the writable database through one name that follows the primary
(Aurora Global Database's writer endpoint, the ``writer.`` failover record): after a region failover and the
promotion of a secondary database, the same name leads to the new primary and the services reconnect.
Locally the services of the secondary and standby regions get ``<DB>_URL`` on this endpoint instead of the
primary's own port, so a promotion needs no restart: :meth:`WriterEndpoint.repoint` sends new connections to
the promoted server and cuts the open ones (a connection to a dead primary would only hang until a timeout).

Each region has its own endpoint (:class:`~.regions.LocalRegions` ``links``): it is also that region's network
link to the primary, which its replica streams WAL through as well, so one endpoint can

* **hold** (:meth:`WriterEndpoint.hold`): the fence of a planned switchover: open connections are cut and new
  ones wait, unforwarded, until :meth:`~WriterEndpoint.repoint` (or :meth:`~WriterEndpoint.release`) lets them
  through to the promoted server, so no write reaches the old primary after it was fenced;
* **cut** (:meth:`WriterEndpoint.cut`): a network partition of the region from the primary, as a firewall
  that rejects: open connections are reset and new ones closed at once, so the region's writes fail fast and
  its replica's WAL receiver loses its stream, until :meth:`~WriterEndpoint.heal`.

It is a byte pump (asyncio streams), no protocol knowledge: TLS, authentication and the Postgres protocol pass
through untouched. It runs inside the process of ``stackwright up`` (or the drill), as the global entry's
companion, so a region's failure never takes it down.
"""

from __future__ import annotations

import asyncio
import contextlib


class WriterEndpoint:
    """Listen on ``127.0.0.1:port`` and forward every connection to ``127.0.0.1:target_port``.

    ``port`` 0 picks a free port (read :attr:`port` after :meth:`start`). Connections that cannot reach the
    target are closed at once, which a Postgres client sees as a refused/reset connection.
    """

    def __init__(self, target_port: int, *, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self.target_region: str | None = None
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._passing = asyncio.Event()  # cleared while held: new connections wait
        self._passing.set()
        #: True while :meth:`cut` (partitioned): connections are refused.
        self.is_cut = False

    @property
    def url_host(self) -> str:
        """``host:port`` to put in a Postgres URL in place of the primary's."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def repoint(self, target_port: int, region: str | None = None) -> None:
        """Send new connections to ``target_port`` and close the open ones (their server is gone or no
        longer the primary; the clients' pools reconnect through this endpoint to the new one)."""
        self.target_port = target_port
        self.target_region = region
        self._close_open()
        self._passing.set()

    def hold(self) -> None:
        """Fence the target: cut the open connections and keep new ones waiting (not forwarded, not refused)
        until :meth:`repoint` or :meth:`release`; a client sees a slow connect, not an error."""
        self._passing.clear()
        self._close_open()

    def release(self) -> None:
        """Forward the held connections (to the unchanged target) and every new one."""
        self._passing.set()

    def cut(self) -> None:
        """Partition: reset the open connections and close new ones at once, until :meth:`heal`."""
        self.is_cut = True
        self._close_open(abort=True)

    def heal(self) -> None:
        """End a :meth:`cut`: new connections are forwarded again."""
        self.is_cut = False

    def _close_open(self, *, abort: bool = False) -> None:
        for writer in list(self._open):
            if abort:  # a reset (RST), as a rejecting firewall sends, not an orderly end
                writer.transport.abort()
            else:
                writer.close()

    async def close(self) -> None:
        """Stop listening and close every forwarded connection."""
        if self._server is not None:
            self._server.close()
        self.is_cut = True  # held connections end too
        self._passing.set()
        self._close_open()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self._passing.is_set():
            await self._passing.wait()
        if self.is_cut:
            client_w.close()
            return
        try:
            server_r, server_w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), timeout=2)
        except (OSError, TimeoutError):
            client_w.close()
            return
        self._open.update((client_w, server_w))
        try:
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        finally:
            for w in (client_w, server_w):
                self._open.discard(w)
                w.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            # One direction ended: end the other too (a half-open Postgres connection is of no use).
            writer.close()


__all__ = ["WriterEndpoint"]
