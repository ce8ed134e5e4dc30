"""A loopback TCP forwarder to pull out from under a client: a server that becomes
unreachable, and then reachable again, with its data intact."""

from __future__ import annotations

import asyncio

__all__ = ["Cable"]


class Cable:
    """A loopback TCP forwarder between the store and the MongoDB server. `unplug()` drops every
    connection and refuses new ones, as a MongoDB that crashed or sits behind a partition does;
    `plug()` brings it back on the same port, with the server's data intact.

    Stopping and restarting a file-backed `WireServer` instead is not reliable: one stopped with
    writes in flight can leave its SQLite file locked, and the restarted server fails to open it
    ("database is locked"), often enough to make the test flaky."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self.port = 0

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    async def plug(self) -> None:
        self._listener = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = int(self._listener.sockets[0].getsockname()[1])

    async def unplug(self) -> None:
        listener, self._listener = self._listener, None
        for transport in list(self._transports):
            transport.abort()
        if listener is not None:
            listener.close()
            await listener.wait_closed()  # every connection through the cable is gone

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, upstream_writer.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(self._copy(reader, upstream_writer, pair), self._copy(upstream_reader, writer, pair))
        finally:
            self._transports.difference_update(pair)

    @staticmethod
    async def _copy(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, pair: tuple[asyncio.WriteTransport, ...]
    ) -> None:
        try:
            while data := await source.read(65_536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:  # either side gone: the whole connection is gone
            for transport in pair:
                transport.abort()
