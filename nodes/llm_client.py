"""The HTTP client for OpenAI-compatible chat completions: one pyreqwest client per process (per event
loop), made on first use and reused by every LLM node there.

Why pyreqwest (Rust's reqwest and hyper, driven from asyncio): 1,000 requests of 200 ms with 200 in
flight, against the test server in another process on this 2-core machine (4 runs each, CPU of the
calling process, its Rust threads included): pyreqwest 1.09-1.14 s and 0.10-0.15 s of CPU; a
hand-written HTTP/1.1 client on raw asyncio streams 1.13 s and 0.06 s; one aiohttp session with
TCPConnector(limit=200) 1.15-1.25 s and 0.19-0.28 s; curl_cffi 1.17-1.30 s and 0.29-0.40 s; 20 httpx
clients of 10 connections 1.5-2.4 s and one httpx client pooling 200 connections 20.3 s (its pool scans
every connection for each waiting request). In a fan-out the client's CPU decides how fast a wave of
answers turns into the next wave of requests, and pyreqwest is a full HTTP client (TLS, chunked bodies,
HTTP/2) where the raw one is not.

Errors come out as three kinds the node decides on: `ProviderStatusError` (an HTTP error status, with
the provider's message and Retry-After), `ProviderConnectionError` (refused, reset, cut short) and the
built-in `TimeoutError` (pyreqwest's timeouts are TimeoutErrors).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError
from pyreqwest.request import RequestBuilder
from pyreqwest.response import Response

from engine.backoff import retry_after_s

MAX_ERROR_MESSAGE_CHARS = 500

TextCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asks for: its id, the function's name and its arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    text: str
    model: str | None
    usage: dict[str, int] | None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ProviderStatusError(Exception):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class ProviderConnectionError(Exception):
    """The connection failed or a response ended before it was complete."""


class MalformedResponseError(Exception):
    """A 2xx response that is not a chat completion."""


class ChatClient:
    def __init__(self, max_connections: int) -> None:
        self._client: Client = (
            ClientBuilder()
            .max_connections(max_connections or None)
            .no_proxy()
            .follow_redirects(False)
            .build()
        )
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        await self._client.close()

    async def complete(
        self, url: str, headers: Mapping[str, str], body: dict[str, Any], timeout_s: float
    ) -> Completion:
        """One chat completion; `timeout_s` bounds the whole exchange."""
        try:
            response = await self._request(url, headers, body, timeout_s).build().send()
            raw = bytes(await response.bytes())
        except TimeoutError:
            raise
        except PyreqwestError as exc:
            raise ProviderConnectionError(_cause(exc)) from None
        _raise_for_status(response, raw)
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            calls = tuple(
                ToolCall(str(call["id"]), str(call["function"]["name"]), str(call["function"]["arguments"]))
                for call in choice["message"].get("tool_calls") or ()
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponseError(f"not a chat completion: {_snippet(raw)}") from None
        return Completion(
            str(text), data.get("model"), _usage(data.get("usage")), choice.get("finish_reason"), calls
        )

    async def stream(
        self,
        url: str,
        headers: Mapping[str, str],
        body: dict[str, Any],
        timeout_s: float,
        on_text: TextCallback,
    ) -> Completion:
        """A streamed chat completion (server-sent events): `on_text` gets each piece of text as it
        arrives; the result holds the whole text. `timeout_s` bounds the whole stream."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        parts: list[str] = []
        model: str | None = None
        usage: dict[str, int] | None = None
        finish: str | None = None
        calls: dict[int, dict[str, str]] = {}
        done = False
        try:
            request = self._request(url, headers, body, timeout_s).streamed_read_buffer_limit(1)
            async with request.build_streamed() as response:
                if response.status >= 300:
                    _raise_for_status(response, bytes(await response.bytes()))
                async for line in _lines(response):
                    payload = line.strip()
                    if not payload.startswith(b"data:"):
                        continue
                    payload = payload[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    chunk = _json_object(payload)
                    if "error" in chunk:
                        raise ProviderStatusError(502, _error_text(chunk, payload))
                    model = chunk.get("model") or model
                    usage = _usage(chunk.get("usage")) or usage
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            parts.append(text)
                            await on_text(text)
                        _add_call_deltas(calls, delta.get("tool_calls"), payload)
                        finish = choice.get("finish_reason") or finish
        except TimeoutError:
            raise
        except PyreqwestError as exc:
            raise ProviderConnectionError(f"the stream broke: {_cause(exc)}") from None
        if not done and finish is None:
            raise ProviderConnectionError("the stream ended before the completion was finished")
        tool_calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items()))
        return Completion("".join(parts), model, usage, finish, tool_calls)

    def _request(
        self, url: str, headers: Mapping[str, str], body: dict[str, Any], timeout_s: float
    ) -> RequestBuilder:
        return (
            self._client.post(url)
            .headers({"Content-Type": "application/json", **headers})
            .body_bytes(json.dumps(body).encode())
            .timeout(timedelta(seconds=timeout_s))
        )


async def _lines(response: Response) -> AsyncIterator[bytes]:
    """The streamed body split into lines (the last one without its newline). The request's read-ahead
    limit is 1 byte: with pyreqwest's default it would gather a short stream whole before the first
    chunk, and tokens would reach the job's watchers all at the end."""
    reader = response.body_reader
    pending = b""
    while (chunk := await reader.read_chunk()) is not None:
        pending += bytes(chunk)
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
    if pending:
        yield pending


def _add_call_deltas(calls: dict[int, dict[str, str]], deltas: Any, payload: bytes) -> None:
    """Streamed tool calls arrive in pieces by `index`: the first names the call's id and function, the
    rest add to its arguments' text."""
    if deltas is None:
        return
    try:
        for delta in deltas:
            call = calls.setdefault(int(delta.get("index", 0)), {"id": "", "name": "", "arguments": ""})
            function = delta.get("function") or {}
            call["id"] = str(delta.get("id") or call["id"])
            call["name"] += str(function.get("name") or "")
            call["arguments"] += str(function.get("arguments") or "")
    except (TypeError, ValueError, AttributeError):
        raise MalformedResponseError(f"a streamed tool call is malformed: {_snippet(payload)}") from None


def _raise_for_status(response: Response, raw: bytes) -> None:
    if response.status >= 300:
        raise ProviderStatusError(
            response.status, _error_message(raw, response.status), retry_after_s(response.headers)
        )


def _cause(exc: PyreqwestError) -> str:
    """The innermost cause pyreqwest reports ("Connection refused (os error 111)"), after its kind."""
    causes = (getattr(exc, "details", None) or {}).get("causes") or []
    innermost = causes[-1].get("message") if causes else None
    return f"{type(exc).__name__}: {innermost or exc}"


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except ValueError:
        raise MalformedResponseError(f"a stream event is not JSON: {_snippet(payload)}") from None
    if not isinstance(chunk, dict):
        raise MalformedResponseError(f"a stream event is not a JSON object: {_snippet(payload)}")
    return chunk


def _usage(raw: Any) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        return None
    usage = {
        name: int(raw[name])
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(raw.get(name), int | float)
    }
    if "total_tokens" not in usage and usage:
        usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    return usage or None


def _error_text(data: dict[str, Any], raw: bytes) -> str:
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:MAX_ERROR_MESSAGE_CHARS]
    for value in (error, data.get("detail"), data.get("message")):
        if isinstance(value, str) and value:
            return value[:MAX_ERROR_MESSAGE_CHARS]
    return _snippet(raw)


def _error_message(raw: bytes, status: int) -> str:
    """The provider's own message from an error body (OpenAI's {"error": {"message"}}, or the like)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return _error_text(data, raw)
    return _snippet(raw) or f"HTTP {status} without a body"


def _snippet(raw: bytes) -> str:
    return raw[:MAX_ERROR_MESSAGE_CHARS].decode("utf-8", errors="replace").strip()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, ChatClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(max_connections: int) -> ChatClient:
    """The process's client for the running event loop (`max_connections` 0: no limit)."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(max_connections)
    if client is None or client.closed:
        client = clients[max_connections] = ChatClient(max_connections)
    return client


async def close_shared_clients() -> None:
    """Close the running event loop's clients. The service's processes end with their loops, so it never
    needs to; a caller that keeps one loop across many runs (the test suite) calls it to start afresh."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.close()
