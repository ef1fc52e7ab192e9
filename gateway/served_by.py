"""Every response names the gateway process that made it, `X-Gateway-Worker: <pid>`, so that behind one
port of `serve --workers N` a client (or a test) can tell which of the N answered; WebSocket handshakes
and event streams too."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WORKER_HEADER = "x-gateway-worker"
RESPONSE_STARTS = frozenset({"http.response.start", "websocket.accept"})


class ServedByMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header = (WORKER_HEADER.encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_naming_this_process(message: Message) -> None:
            if message["type"] in RESPONSE_STARTS:
                message = {**message, "headers": [*message.get("headers", ()), self._header]}
            await send(message)

        await self.app(scope, receive, send_naming_this_process)
