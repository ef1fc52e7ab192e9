"""`workflow-service serve`: the gateway under uvicorn on HOST:PORT, announcing its URLs once it listens."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import uvicorn
from fastapi import FastAPI

from actors.ray_runtime.bootstrap import ServiceRuntime
from cli.inputs import EXIT_INVALID
from config.local_keys import MissingKeyError
from config.settings import get_settings
from gateway.main import create_app

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SHUTDOWN_GRACE_S = 30
"""How long a shutdown waits for requests in flight before it cancels them."""
KEEP_ALIVE_S = 75
"""Idle keep-alive connections are kept longer than clients and load balancers keep theirs (commonly
5 to 60 s): a server that closes first races a request sent on the closing connection (the client sees
a read error; 1 request in 400 with equal 5 s timeouts)."""


def base_url(host: str, port: int) -> str:
    shown = "localhost" if host in WILDCARD_HOSTS else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class AnnouncingServer(uvicorn.Server):
    """Prints where the service is once it listens, when the runtime (and its Ray dashboard) is up; at
    shutdown, tells the app first, so its endless streams end and let the shutdown proceed."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, host: str, port: int) -> None:
        super().__init__(config)
        self._app = app
        self._url = base_url(host, port)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        runtime: ServiceRuntime = self._app.state.runtime
        dashboard = runtime.cluster.dashboard_url or "not running (RAY_DASHBOARD=false or a remote cluster)"
        print(
            f"Workflow Service is ready\n"
            f"  API:           {self._url}/api/v1\n"
            f"  Run viewer:    {self._url}/ui/\n"
            f"  Docs:          {self._url}/docs\n"
            f"  Ray dashboard: {dashboard}",
            flush=True,
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        draining: asyncio.Event = self._app.state.draining
        draining.set()
        await super().shutdown(sockets)


def serve(host: str | None, port: int | None) -> int:
    """Serve until stopped (0), or refuse to start (2) with the reason on stderr: the address given here
    decides whether this is the embedded development mode, so it is checked, not only the settings'."""
    settings = get_settings()
    settings = settings.with_values(HOST=host or settings.server.host, PORT=port or settings.server.port)
    host, port = settings.server.host, settings.server.port
    try:
        app = create_app(settings)
    except MissingKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = AnnouncingServer(config, app, host, port)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0
