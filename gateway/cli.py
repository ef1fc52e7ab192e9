"""`workflow-service`: the service's command line. `serve` runs the gateway with uvicorn on HOST:PORT."""

from __future__ import annotations

import argparse
import contextlib
import socket
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from actors.bootstrap import ServiceRuntime
from config.settings import get_settings
from gateway.main import create_app

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def base_url(host: str, port: int) -> str:
    shown = "localhost" if host in WILDCARD_HOSTS else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class AnnouncingServer(uvicorn.Server):
    """Prints where the service is once it listens, when the runtime (and its Ray dashboard) is up."""

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
            f"  Docs:          {self._url}/docs\n"
            f"  Ray dashboard: {dashboard}",
            flush=True,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workflow-service", description="The workflow execution service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    serve = commands.add_parser(
        "serve", help="run the API gateway (with the embedded store, Redis and Ray unless configured)"
    )
    serve.add_argument("--host", help="address to listen on (default: HOST, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT, 8001)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    server = AnnouncingServer(uvicorn.Config(app, host=host, port=port, log_config=None), app, host, port)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
