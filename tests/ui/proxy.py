"""A TCP proxy on loopback in front of the gateway that can cut the event streams passing through it, as a
restarted server or a network blip would; it remembers what each event-stream request asked for."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

REQUEST_HEAD = re.compile(
    rb"^(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.[01]\r\n(?P<headers>.*?)\r\n\r\n", re.S
)
CHUNK_BYTES = 65_536


@dataclass
class StreamRequest:
    path: str
    last_event_id: str | None


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    streaming: bool = False


@dataclass
class DroppingProxy:
    upstream_host: str
    upstream_port: int
    stream_requests: list[StreamRequest] = field(default_factory=list)
    _connections: set[_Connection] = field(default_factory=set)
    _server: asyncio.Server | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for connection in list(self._connections):
            self._close(connection)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_event_streams(self) -> int:
        """Cut every open event stream, both ways; returns how many were cut."""
        streams = [connection for connection in self._connections if connection.streaming]
        for connection in streams:
            self._close(connection)
        return len(streams)

    def _close(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        for writer in (connection.client, connection.upstream):
            writer.transport.abort()

    async def _serve(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        connection = _Connection(client, upstream)
        self._connections.add(connection)
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream, connection)),
            asyncio.create_task(self._pump(upstream_reader, client, None)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        self._close(connection)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests_of: _Connection | None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK_BYTES):
                if requests_of is not None:
                    self._note_request(chunk, requests_of)
                writer.write(chunk)
                await writer.drain()

    def _note_request(self, chunk: bytes, connection: _Connection) -> None:
        head = REQUEST_HEAD.match(chunk)
        if head is None:
            return
        path = head["path"].decode("latin-1")
        if not re.match(r"^/api/v1/jobs/[^/]+/events", path):
            return
        connection.streaming = True
        headers = dict(
            line.split(": ", 1) for line in head["headers"].decode("latin-1").split("\r\n") if ": " in line
        )
        last = next((value for name, value in headers.items() if name.lower() == "last-event-id"), None)
        self.stream_requests.append(StreamRequest(path, last))
