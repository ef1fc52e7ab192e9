"""A real gateway served by uvicorn on a loopback port of the running event loop, for tests and scripts
that drive it over HTTP (the browser tests, `python -m docs.screenshots`).

    async with serve_gateway(settings) as (base_url, app):
        ...  # http://127.0.0.1:<port>
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from config.settings import Settings
from gateway.main import create_app

STARTUP_TIMEOUT_S = 90
GRACEFUL_SHUTDOWN_S = 5
"""A /ws/workflow handler whose client has left can stay stuck cancelling its Redis subscription; uvicorn
then cancels it after this long instead of waiting for it forever."""


@asynccontextmanager
async def serve_gateway(settings: Settings) -> AsyncIterator[tuple[str, FastAPI]]:
    """Yields (base URL, app) once the gateway answers; stops it on exit."""
    app = create_app(settings, configure_logs=False)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle adds ~40 ms)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the gateway stopped while starting")
            await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        draining: asyncio.Event = app.state.draining
        draining.set()
        server.should_exit = True
        await serving
        listener.close()
