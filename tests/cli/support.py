"""Helpers for the command-line tests: running `main()` off the event loop, tokens for the test gateway, a
real HTTP API to call."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jose import jwt

from cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
JWT_SECRET = "cli-test-secret-0123456789abcdef0123"
"""The key the `service` fixture's gateway checks tokens with."""


def token(subject: str, secret: str = JWT_SECRET) -> str:
    return jwt.encode({"sub": subject, "exp": int(time.time()) + 600}, secret, algorithm="HS256")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def outcome(self) -> dict[str, Any]:
        """The JSON object `run` prints on stdout."""
        return json.loads(self.out)


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """`main(argv)` in a worker thread: it runs its own event loop (asyncio.run), while this one keeps
    serving whatever the test runs on it (a gateway)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ApiServer:
    """A small JSON API on 127.0.0.1 in a thread of its own: POST /endpoint answers what it received
    (and the Authorization header it got); POST /forbidden answers 403."""

    port: int = 0
    requests: list[SeenRequest] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(SeenRequest(request.path, dict(request.headers), body))
        return web.json_response({"received": body, "authorization": request.headers.get("Authorization")})

    async def _forbidden(self, request: web.Request) -> web.Response:
        self.requests.append(SeenRequest(request.path, dict(request.headers), await request.text()))
        return web.json_response({"error": "not for you"}, status=403)

    def start(self) -> ApiServer:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/endpoint", self._endpoint)
            app.router.add_post("/forbidden", self._forbidden)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="cli-test-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
