"""A real OpenAI-compatible chat completions server on loopback, for tests and benchmarks.

    with OpenAITestServer(latency_s=0.2, max_in_flight=200) as server:
        url = server.url                      # "http://127.0.0.1:<port>"; POST {url}/v1/chat/completions
        server.inject(429, retry_after=1.0)   # the next request gets a 429 with Retry-After: 1.0
        ...
        server.peak_open                      # most requests open at once (received, not yet answered)
        server.requests                       # every request: path, headers, JSON body, arrival time

It runs on its own event loop in a background thread (`start()` returns once the port is bound), so
sync and async callers, and other processes, reach it the same way. `python -m tests.support.openai_server
--latency 0.2 --max-in-flight 200` runs one in the foreground and prints its URL.

Behaviour:
- POST /v1/chat/completions and /chat/completions. The reply is `reply_text`, or when that is None
  "echo: <last message's content>". When the request asks for `response_format: {"type": "json_object"}`
  the reply is `json.dumps(json_reply)`; without a `json_reply`, `reply_text` (a model that ignores the
  format), else the JSON text {"echo": <last content>}.
- Each request waits `latency_s` once it is being served; at most `max_in_flight` are served at
  once, the rest queue (None: no cap).
- `"stream": true` answers with server-sent events: a role chunk, one chunk per word of the reply
  (`chunk_delay_s` apart), a chunk with finish_reason "stop", a usage chunk when
  `stream_options.include_usage` is true, then `data: [DONE]`.
- Usage: prompt_tokens = words in all messages, completion_tokens = words in the reply.
- `inject(status, count, retry_after, message)` makes the next `count` requests fail at once (no
  latency, no queueing) with that status, an OpenAI-style error body and, if given, Retry-After.
- Tool calls, two ways. `script(*replies)` queues scripted replies (`ScriptedReply(text, tool_calls)`,
  the calls as (function name, arguments: an object or raw text)): each request takes the next one while
  any are queued. `tool_rounds=(rounds, calls)` (CLI `--tool-rounds 10x3`) answers a request that offers
  `tools` and holds fewer than `rounds` assistant messages with `calls` calls, call j of the functions
  offered round robin with arguments {"turn": <assistant messages so far>, "call": j}; other requests
  get the usual reply. A reply with calls has finish_reason "tool_calls"; streamed, each call comes as
  `delta.tool_calls` chunks (the id and name first, the arguments in two pieces).
- `latency_s`, `reply_text`, `json_reply`, `chunk_delay_s` and `tool_rounds` may be changed while it
  runs; `max_in_flight` is fixed at start. `record_requests=False` keeps no request list (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float


@dataclass(frozen=True)
class ScriptedReply:
    text: str = ""
    tool_calls: tuple[tuple[str, Any], ...] = ()
    """(function name, arguments): an object is sent as its JSON text, a string as it is."""


@dataclass(frozen=True)
class Injected:
    status: int
    retry_after: float | None
    message: str


class OpenAITestServer:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        max_in_flight: int | None = None,
        reply_text: str | None = None,
        json_reply: dict[str, Any] | None = None,
        chunk_delay_s: float = 0.0,
        tool_rounds: tuple[int, int] | None = None,
        record_requests: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.max_in_flight = max_in_flight
        self.reply_text = reply_text
        self.json_reply = json_reply
        self.chunk_delay_s = chunk_delay_s
        self.tool_rounds = tool_rounds
        self.record_requests = record_requests
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.open = 0
        self.peak_open = 0
        self._injected: deque[Injected] = deque()
        self._script: deque[ScriptedReply] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inject(
        self, status: int, count: int = 1, retry_after: float | None = None, message: str = ""
    ) -> None:
        for _ in range(count):
            self._injected.append(Injected(status, retry_after, message or f"injected error {status}"))

    def forget(self) -> None:
        """Drop the requests seen and the replies scripted but never asked for (a test cancelled early)."""
        self.requests.clear()
        self._script.clear()

    def script(self, *replies: ScriptedReply) -> None:
        """Queue replies for the next requests, in order (thread-safe enough: a deque's append)."""
        self._script.extend(replies)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> OpenAITestServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start_here())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_here())
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-test-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def start_here(self) -> None:
        """Serve on the running event loop (what `start()` does in its thread)."""
        self._slots = asyncio.Semaphore(self.max_in_flight) if self.max_in_flight else None
        app = web.Application()
        for path in CHAT_PATHS:
            app.router.add_post(path, self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop_here(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ handling

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            body = await request.json()
            if self.record_requests:
                self.requests.append(RecordedRequest(request.path, dict(request.headers), body, time.time()))
            if self._injected:
                return _error_response(self._injected.popleft())
            if self._slots is None:
                return await self._serve(request, body)
            async with self._slots:
                return await self._serve(request, body)
        finally:
            self.open -= 1

    async def _serve(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(self.latency_s)
        scripted = self._script.popleft() if self._script else self._tool_round(body)
        reply = scripted.text if scripted is not None else self._reply(body)
        calls = _calls(scripted.tool_calls) if scripted is not None else []
        usage = _usage(body, reply)
        model = str(body.get("model", "test-model"))
        if body.get("stream"):
            return await self._stream(request, body, model, reply, usage, calls)
        message: dict[str, Any] = {"role": "assistant", "content": reply or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
                ],
                "usage": usage,
            }
        )

    def _tool_round(self, body: dict[str, Any]) -> ScriptedReply | None:
        """The `tool_rounds` reply to this request, or None for the usual one."""
        tools = body.get("tools") or []
        if self.tool_rounds is None or not tools:
            return None
        rounds, count = self.tool_rounds
        turn = sum(1 for message in body.get("messages") or [] if message.get("role") == "assistant")
        if turn >= rounds:
            return None
        names = [tool["function"]["name"] for tool in tools]
        return ScriptedReply(
            tool_calls=tuple((names[j % len(names)], {"turn": turn, "call": j}) for j in range(count))
        )

    def _reply(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or [{}]
        last = str(messages[-1].get("content", ""))
        wants_json = (body.get("response_format") or {}).get("type") == "json_object"
        if wants_json and self.json_reply is not None:
            return json.dumps(self.json_reply)
        if self.reply_text is not None:
            return self.reply_text
        return json.dumps({"echo": last}) if wants_json else f"echo: {last}"

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        reply: str,
        usage: dict[str, int],
        calls: list[dict[str, Any]],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        for index, piece in enumerate(re.findall(r"\S+\s*", reply)):
            if index and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await send({"content": piece})
        for index, call in enumerate(calls):
            function = call["function"]
            head = {"index": index, "id": call["id"], "type": "function"}
            await send({"tool_calls": [{**head, "function": {"name": function["name"], "arguments": ""}}]})
            half = len(function["arguments"]) // 2
            for piece in (function["arguments"][:half], function["arguments"][half:]):
                await send({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        await send({}, finish="tool_calls" if calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(f"data: {json.dumps(final)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _calls(scripted: tuple[tuple[str, Any], ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for name, args in scripted
    ]


def _usage(body: dict[str, Any], reply: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error_response(injected: Injected) -> web.Response:
    headers = {} if injected.retry_after is None else {"Retry-After": f"{injected.retry_after:g}"}
    kind = "rate_limit_error" if injected.status == 429 else "server_error"
    if 400 <= injected.status < 500 and injected.status != 429:
        kind = "invalid_request_error"
    body = {"error": {"message": injected.message, "type": kind, "code": str(injected.status)}}
    return web.json_response(body, status=injected.status, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the OpenAI-compatible test server in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request once served")
    parser.add_argument("--max-in-flight", type=int, default=200, help="requests served at once; 0 = no cap")
    parser.add_argument(
        "--tool-rounds", default=None, help="ROUNDSxCALLS: answer requests with tools with tool calls"
    )
    args = parser.parse_args()
    rounds = None
    if args.tool_rounds:
        count, _, calls = args.tool_rounds.partition("x")
        rounds = (int(count), int(calls))
    server = OpenAITestServer(
        latency_s=args.latency,
        max_in_flight=args.max_in_flight or None,
        tool_rounds=rounds,
        record_requests=False,
        host=args.host,
        port=args.port,
    )

    async def serve() -> None:
        await server.start_here()
        print(server.url, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
