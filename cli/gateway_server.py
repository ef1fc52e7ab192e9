"""What a gateway process serves with, the only one or one of `serve --workers N`: uvicorn's settings, a
server that tells the app first when it shuts down, and what `serve` prints once the service listens."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SHUTDOWN_GRACE_S = 30
"""How long a shutdown waits for requests in flight before it cancels them."""
KEEP_ALIVE_S = 75
"""Idle keep-alive connections are kept longer than clients and load balancers keep theirs (commonly
5 to 60 s): a server that closes first races a request sent on the closing connection (the client sees
a read error; 1 request in 400 with equal 5 s timeouts)."""
NO_DASHBOARD = "not running (RAY_DASHBOARD=false or a remote cluster)"


def base_url(host: str, port: int) -> str:
    shown = "localhost" if host in WILDCARD_HOSTS else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def announcement(url: str, dashboard_url: str | None, worker_pids: Sequence[int]) -> str:
    count = len(worker_pids)
    pids = ", ".join(str(pid) for pid in worker_pids)
    return (
        f"Workflow Service is ready\n"
        f"  API:           {url}/api/v1\n"
        f"  Run viewer:    {url}/ui/\n"
        f"  Docs:          {url}/docs\n"
        f"  Ray dashboard: {dashboard_url or NO_DASHBOARD}\n"
        f"  Workers:       {count} gateway process{'es' if count > 1 else ''} (pid{'s' if count > 1 else ''} "
        f"{pids})"
    )


class GatewayServer(uvicorn.Server):
    """At shutdown, tells the app first, so its endless streams end and let the shutdown proceed."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                timeout_keep_alive=KEEP_ALIVE_S,
            )
        )
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        draining: asyncio.Event = self.app.state.draining
        draining.set()
        await super().shutdown(sockets)
