"""A loopback stand-in for the parts of https://httpbin.org the guides' HTTP examples call.

The guides show httpbin.org URLs, which readers can try as they are; the suite points them here instead
(`HTTPBIN_URL` is replaced), so the examples run without the internet and answer the same way:

- `/anything[/...]`, `/get`, `/post`: the request echoed: method, args, headers, data, json;
- `/status/<code>`: that status with an empty body;
- `/json`: httpbin's sample slideshow;
- `/delay/<seconds>`: the echo after that long (at most 10 s).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

HTTPBIN_URL = "https://httpbin.org"
MAX_DELAY_S = 10.0
SLIDESHOW = {
    "slideshow": {
        "author": "Yours Truly",
        "date": "date of publication",
        "slides": [
            {"title": "Wake up to WonderWidgets!", "type": "all"},
            {
                "items": ["Why <em>WonderWidgets</em> are great", "Who <em>buys</em> WonderWidgets"],
                "title": "Overview",
                "type": "all",
            },
        ],
        "title": "Sample Slide Show",
    }
}


def _title_case(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


async def _echo(request: web.Request) -> web.Response:
    data = await request.text()
    try:
        parsed: Any = json.loads(data) if data else None
    except json.JSONDecodeError:
        parsed = None
    args: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        args[key] = values[0] if len(values) == 1 else values
    return web.json_response(
        {
            "args": args,
            "data": data,
            "headers": {_title_case(name): value for name, value in request.headers.items()},
            "json": parsed,
            "method": request.method,
            "url": str(request.url),
        }
    )


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]))


async def _json(request: web.Request) -> web.Response:
    return web.json_response(SLIDESHOW)


async def _delay(request: web.Request) -> web.Response:
    await asyncio.sleep(min(MAX_DELAY_S, float(request.match_info["seconds"])))
    return await _echo(request)


class HttpbinServer:
    """Serves on the running event loop, on a free loopback port."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/anything", _echo)
        app.router.add_route("*", "/anything/{rest:.*}", _echo)
        app.router.add_get("/get", _echo)
        app.router.add_post("/post", _echo)
        app.router.add_route("*", "/status/{code:\\d{3}}", _status)
        app.router.add_get("/json", _json)
        app.router.add_route("*", "/delay/{seconds:[0-9.]+}", _delay)
        self._runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def start(self) -> HttpbinServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()
