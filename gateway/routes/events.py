"""Live events: Server-Sent Events for one job; WebSockets for one job or every job of a workflow.

SSE, `GET /api/v1/jobs/{job_id}/events`: each event is `id: <stream id>`, `event: <type>`,
`data: <the JobEvent as JSON>`. Resume with the `Last-Event-ID` header (or `?after=`, the header wins);
a `: keep-alive` comment goes out after EVENT_KEEPALIVE_S idle seconds; the response ends after the
job's last event (at once, after the replay, for a job that already ended).

WebSocket, `/ws/jobs/{job_id}` and `/ws/workflow/{workflow_id}`, resumable with `?after=<event id>`:
each message is one JobEvent as JSON text. The token comes in the Authorization header or `?token=`.
The server accepts the connection, then closes it with 4401 when the token is missing or invalid, 4404
for an unknown id or another user's, 4409 for a record stored but unreadable, 4422 for a bad `?after=`;
with 1000 after a job's last event and 1011 when the store or the event bus fails (the client resumes
from the last id it saw).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from engine.errors import NotFoundError, Problem, StorageUnavailableError, UnreadableRecordError
from engine.records import JobEvent
from gateway.auth import AuthenticationError, Principal, header_token
from gateway.deps import (
    BusDep,
    DrainingDep,
    SettingsDep,
    StoreDep,
    StreamableJob,
    VerifierDep,
    load_owned_job,
    load_owned_workflow,
)
from gateway.errors import ERROR_RESPONSES, UNREADABLE, InvalidRequestError, documented
from gateway.streams import follow_job, follow_workflow

router = APIRouter(tags=["events"])
logger = logging.getLogger(__name__)

CLOSE_DONE = 1000
CLOSE_UNAVAILABLE = 1011
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_UNREADABLE = 4409
CLOSE_INVALID = 4422
MAX_CLOSE_REASON_BYTES = 123
KEEP_ALIVE = ": keep-alive\n\n"

EventStream = AsyncGenerator[JobEvent | None, None]
AfterQuery = Annotated[
    str | None, Query(description="resume after this event id (as sent in `id:`); `0` or absent replays all")
]
TokenQuery = Annotated[str | None, Query(description="the bearer token, when no Authorization header is set")]


def sse_frame(event: JobEvent) -> str:
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


async def _sse_body(events: EventStream, job_id: str) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield KEEP_ALIVE if event is None else sse_frame(event)
    except StorageUnavailableError as exc:
        logger.warning("event stream of job %s ended early: %s", job_id, exc)
    finally:
        await events.aclose()


@router.get(
    "/api/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"text/event-stream": {}}, "description": "The job's events, then the stream ends"},
        **documented(404, "No such job"),
        **UNREADABLE,
    },
    summary="A job's events as Server-Sent Events, resumable with Last-Event-ID",
)
async def job_event_source(
    job: StreamableJob,
    bus: BusDep,
    store: StoreDep,
    settings: SettingsDep,
    draining: DrainingDep,
    after: AfterQuery = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    position, where = (last_event_id, "header.Last-Event-ID") if last_event_id else (after, "query.after")
    try:
        events = follow_job(bus, store, job.id, position, settings.server.event_keepalive_s, draining)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), problems=[Problem(str(exc), field=where)]) from None
    return StreamingResponse(
        _sse_body(events, job.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/ws/jobs/{job_id}")
async def job_socket(
    websocket: WebSocket,
    job_id: str,
    verifier: VerifierDep,
    bus: BusDep,
    store: StoreDep,
    settings: SettingsDep,
    after: AfterQuery = None,
    token: TokenQuery = None,
) -> None:
    async def open_stream(principal: Principal) -> EventStream:
        job = await load_owned_job(store, principal, job_id)
        return follow_job(bus, store, job.id, after, settings.server.event_keepalive_s)

    await _relay(websocket, verifier.verify, token, open_stream)


@router.websocket("/ws/workflow/{workflow_id}")
async def workflow_socket(
    websocket: WebSocket,
    workflow_id: str,
    verifier: VerifierDep,
    bus: BusDep,
    store: StoreDep,
    settings: SettingsDep,
    after: AfterQuery = None,
    token: TokenQuery = None,
) -> None:
    async def open_stream(principal: Principal) -> EventStream:
        workflow = await load_owned_workflow(store, principal, workflow_id)
        return follow_workflow(bus, workflow.id, after, settings.server.event_keepalive_s)

    await _relay(websocket, verifier.verify, token, open_stream)


async def _relay(
    websocket: WebSocket,
    verify: Callable[[str | None], Principal],
    query_token: str | None,
    open_stream: Callable[[Principal], Awaitable[EventStream]],
) -> None:
    await websocket.accept()
    try:
        principal = verify(header_token(websocket.headers.get("authorization")) or query_token)
        events = await open_stream(principal)
    except AuthenticationError as exc:
        await _close(websocket, CLOSE_UNAUTHENTICATED, exc.message)
        return
    except NotFoundError as exc:
        await _close(websocket, CLOSE_NOT_FOUND, exc.message)
        return
    except UnreadableRecordError as exc:
        await _close(websocket, CLOSE_UNREADABLE, exc.message)
        return
    except ValueError as exc:
        await _close(websocket, CLOSE_INVALID, str(exc))
        return
    except StorageUnavailableError as exc:
        await _close(websocket, CLOSE_UNAVAILABLE, exc.message)
        return
    sender = asyncio.create_task(_send_events(websocket, events))
    receiver = asyncio.create_task(_until_disconnect(websocket))
    await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sender, receiver):
        task.cancel()
    await asyncio.gather(sender, receiver, return_exceptions=True)
    if receiver.cancelled():
        await _close(websocket, *_ending(sender))


def _ending(sender: asyncio.Task[None]) -> tuple[int, str]:
    """How to close once the events ended while the client was still there."""
    error = None if sender.cancelled() else sender.exception()
    if error is None:
        return CLOSE_DONE, "job finished"
    logger.warning("event stream ended early: %s", error)
    return CLOSE_UNAVAILABLE, "event stream failed; resume with ?after=<last event id>"


async def _send_events(websocket: WebSocket, events: EventStream) -> None:
    try:
        async for event in events:
            if event is not None:
                await websocket.send_text(event.model_dump_json())
    finally:
        await events.aclose()


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    encoded = reason.encode()[:MAX_CLOSE_REASON_BYTES]
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code, encoded.decode(errors="ignore"))
