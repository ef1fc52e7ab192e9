"""The floor for LLM fan-out: the least an asyncio program can spend on 1,000 chat completion calls.

A bare HTTP/1.1 keep-alive client on asyncio streams (one connection per concurrent request, no
parsing beyond the status line and Content-Length): what the service's own client is measured
against, since nothing faster exists in Python here.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hello"}]}).encode()


async def _call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> int:
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: "
        + host.encode()
        + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def fan_out(url: str, calls: int, in_flight: int) -> float:
    """Seconds for `calls` requests with at most `in_flight` open, over `in_flight` kept-alive connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(calls):
        queue.put_nowait(index)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                queue.get_nowait()
                if await _call(reader, writer, f"{host}:{port}") != 200:
                    raise RuntimeError("the test server refused a call")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(in_flight, calls))))
    return time.perf_counter() - started
