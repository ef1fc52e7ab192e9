"""`workflow-service serve`: the gateway under uvicorn on HOST:PORT, announcing its URLs once it listens;
in this process (`--workers 1`) or in N worker processes on the one port (cli/gateway_workers.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from actors.ray_runtime.bootstrap import ServiceRuntime
from cli.gateway_server import GatewayServer, announcement, base_url
from cli.gateway_workers import serve_workers
from cli.inputs import EXIT_INVALID
from config.local_keys import MissingKeyError
from config.settings import Settings, get_settings
from gateway.main import create_app


class AnnouncingServer(GatewayServer):
    """Prints where the service is once it listens, when the runtime (and its Ray dashboard) is up."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        runtime: ServiceRuntime = self.app.state.runtime
        url = base_url(self.config.host, self.config.port)
        print(announcement(url, runtime.cluster.dashboard_url, [os.getpid()]), flush=True)


def default_workers() -> int:
    """One gateway process per core this process may run on (its CPU affinity, which a container's
    `--cpuset-cpus` sets; a CPU quota without a cpuset is not seen: pass --workers there)."""
    return len(os.sched_getaffinity(0)) or 1


def serve(host: str | None, port: int | None, workers: int | None = None) -> int:
    """Serve until stopped (0), or refuse to start (2) with the reason on stderr: the address given here
    decides whether this is the embedded development mode, so it is checked, not only the settings'. With
    several workers, 1 when the port is taken or a worker ends before it is ready."""
    settings = get_settings()
    settings = settings.with_values(HOST=host or settings.server.host, PORT=port or settings.server.port)
    count = workers or default_workers()
    try:
        return serve_workers(settings, count) if count > 1 else _serve_here(settings)
    except MissingKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def _serve_here(settings: Settings) -> int:
    server = AnnouncingServer(create_app(settings), settings.server.host, settings.server.port)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0
