"""Limits on request bodies, enforced before anything parses them.

Size (413): a declared Content-Length over the limit is refused before any of the body is read. A body
without one (chunked) is counted as it streams in, and refused at the chunk that crosses the limit.

Nesting (422): a body whose JSON nests deeper than MAX_JSON_DEPTH is refused from its text, so a deep
body never costs a deep parse (Python's json module and pydantic-core give up at different depths, and
what one writes the other may not read back). The text is read as UTF-8, the only encoding JSON between
systems may use, so a body in any other is refused first: json.loads would read UTF-16 or UTF-32, whose
bytes the nesting check cannot count (a UTF-16 `∀` holds the byte of a quote). Every body is checked,
whatever its route or content type; WebSocket messages are not, since no WebSocket route reads what the
client sends.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.errors import Problem
from engine.nesting import MAX_JSON_DEPTH, crossing, text_too_deep
from gateway.errors import error_response

UTF_8 = ("utf-8", "utf-8-sig")


class BodyTooLargeError(HTTPException):
    """Raised from `receive` at the chunk that crosses the limit; the connection cannot be reused."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body exceeds the limit of {limit} bytes", headers={"Connection": "close"}
        )


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLargeError(self.max_bytes)
        response = error_response(error.status_code, error.detail, headers=error.headers)
        await response(scope, receive, send)


class JsonNestingLimitMiddleware:
    """Reads a request's body whole (the size limit, outside, bounds it), refuses it with 422 when it is
    not UTF-8 or nests deeper than `max_depth`, and otherwise hands it on as it came."""

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        received = [await receive()]
        while received[-1]["type"] == "http.request" and received[-1].get("more_body", False):
            received.append(await receive())
        body = b"".join(message.get("body", b"") for message in received)
        refusal = _encoding_refusal(body) or (
            _nesting_refusal(body, self.max_depth) if text_too_deep(body, self.max_depth) else None
        )
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)


def _encoding_refusal(body: bytes) -> JSONResponse | None:
    encoding = json.detect_encoding(body)
    problem = f"JSON text must be UTF-8, this reads as {encoding}"
    if encoding in UTF_8:
        try:
            body.decode(encoding)
        except UnicodeDecodeError as exc:
            problem = f"JSON text must be UTF-8: byte {exc.start} is not"
        else:
            return None
    return error_response(422, "request body is not UTF-8", [Problem(problem, field="body")])


def _nesting_refusal(body: bytes, limit: int) -> JSONResponse:
    where = crossing(body, limit)
    at = f": level {limit + 1} opens at {where}" if where else ""
    problem = Problem(f"JSON nested deeper than the limit of {limit} levels{at}", field="body")
    return error_response(422, f"request body is nested deeper than the limit of {limit} levels", [problem])


def _has_body(scope: Scope) -> bool:
    declared = _content_length(scope)
    if declared is not None:
        return declared > 0
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
