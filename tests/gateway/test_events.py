"""Live events over SSE and WebSocket: in order, resumable without misses or repeats, ended with the job."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.records import EventType, JobEvent, JobRecord, JobStatus
from tests.gateway.conftest import KEEPALIVE_S
from tests.gateway.support import create_workflow, execute, read_socket, read_sse, wait_for_job

LINEAR_EVENTS = [
    ("job_started", None),
    ("node_started", "start"),
    ("node_completed", "start"),
    ("node_started", "greet"),
    ("node_completed", "greet"),
    ("node_started", "end"),
    ("node_completed", "end"),
    ("job_completed", None),
]


def _order(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence)


async def _stored_job(
    service, owner: str, workflow_id: str, status: JobStatus = JobStatus.RUNNING
) -> JobRecord:
    """A job written straight to the store, whose events the test publishes itself."""
    job = JobRecord(
        id=uuid.uuid4().hex, owner=owner, workflow_id=workflow_id, workflow_version=1, status=status
    )
    return await service.runtime.store.create_job(job)


async def _publish(
    service, job: JobRecord, sequence: int, event_type: EventType = EventType.NODE_PROGRESS
) -> str:
    event = JobEvent(
        sequence=sequence, type=event_type, job_id=job.id, workflow_id=job.workflow_id, data={"n": sequence}
    )
    return await service.runtime.bus.publish(event)


async def test_an_sse_client_receives_a_jobs_events_in_order_and_the_stream_ends(http, alice):
    workflow = await create_workflow(http, alice)
    job = await execute(http, alice, workflow["id"], {"name": "Ada"})
    async with http.stream("GET", f"/api/v1/jobs/{job['id']}/events", headers=alice.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_sse(response.aiter_lines())
    assert [(e.event, e.data["node_id"]) for e in events] == LINEAR_EVENTS
    assert [e.data["sequence"] for e in events] == list(range(1, len(LINEAR_EVENTS) + 1))
    assert all(e.id == e.data["id"] and e.event == e.data["type"] for e in events)
    assert [_order(e.id) for e in events] == sorted(_order(e.id) for e in events)
    assert {e.data["job_id"] for e in events} == {job["id"]}
    assert events[4].data["data"]["output"] == {"text": "Hello Ada"}


async def test_a_websocket_client_receives_a_jobs_events_in_order_and_is_closed_normally(
    http, service, alice
):
    workflow = await create_workflow(http, alice)
    job = await execute(http, alice, workflow["id"], {"name": "Bo"})
    result = await read_socket(f"{service.ws_url}/ws/jobs/{job['id']}", alice.headers)
    assert [(m["type"], m["node_id"]) for m in result.messages] == LINEAR_EVENTS
    assert [m["sequence"] for m in result.messages] == list(range(1, len(LINEAR_EVENTS) + 1))
    assert (result.close_code, result.close_reason) == (1000, "job finished")


async def test_a_workflow_socket_receives_every_job_of_the_workflow(http, service, alice):
    workflow = await create_workflow(http, alice)
    first = await execute(http, alice, workflow["id"], {"name": "one"})
    await wait_for_job(http, alice, first["id"])
    url = f"{service.ws_url}/ws/workflow/{workflow['id']}?token={alice.token}"
    replayed = await read_socket(url, until_type="job_completed")
    assert [(m["type"], m["node_id"]) for m in replayed.messages] == LINEAR_EVENTS

    after = replayed.messages[-1]["id"]
    connected = asyncio.Event()
    reading = asyncio.create_task(
        read_socket(f"{url}&after={after}", until_type="job_completed", connected=connected)
    )
    await asyncio.wait_for(connected.wait(), 30)
    second = await execute(http, alice, workflow["id"], {"name": "two"})
    live = await reading
    assert [(m["type"], m["node_id"]) for m in live.messages] == LINEAR_EVENTS
    assert {m["job_id"] for m in live.messages} == {second["id"]}


async def test_an_sse_client_that_reconnects_with_last_event_id_misses_nothing_and_repeats_nothing(
    http, service, alice
):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"])
    for sequence in (1, 2, 3):
        await _publish(service, job, sequence)
    url = f"/api/v1/jobs/{job.id}/events"

    async with http.stream("GET", url, headers=alice.headers) as response:
        lines = response.aiter_lines()
        first = await read_sse(lines, limit=3)
        live = asyncio.create_task(read_sse(lines, limit=1))
        await _publish(service, job, 4)
        first += await live

    for sequence in (5, 6):
        await _publish(service, job, sequence)
    await _publish(service, job, 7, EventType.JOB_COMPLETED)
    resumed_headers = {**alice.headers, "Last-Event-ID": first[-1].id}
    async with http.stream("GET", url, headers=resumed_headers) as response:
        rest = await read_sse(response.aiter_lines())

    sequences = [e.data["sequence"] for e in first + rest]
    assert sequences == [1, 2, 3, 4, 5, 6, 7]
    assert rest[-1].event == "job_completed"


async def test_the_after_query_parameter_resumes_sse_and_websocket_streams(http, service, alice):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"])
    ids = [await _publish(service, job, sequence) for sequence in (1, 2)]
    await _publish(service, job, 3, EventType.JOB_FAILED)

    async with http.stream(
        "GET", f"/api/v1/jobs/{job.id}/events?after={ids[0]}", headers=alice.headers
    ) as response:
        assert [e.data["sequence"] for e in await read_sse(response.aiter_lines())] == [2, 3]
    result = await read_socket(f"{service.ws_url}/ws/jobs/{job.id}?after={ids[1]}", alice.headers)
    assert [m["sequence"] for m in result.messages] == [3] and result.close_code == 1000


async def test_an_idle_stream_sends_keep_alives(http, service, alice):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"])
    async with asyncio.timeout(KEEPALIVE_S * 10):
        async with http.stream("GET", f"/api/v1/jobs/{job.id}/events", headers=alice.headers) as response:
            lines = response.aiter_lines()
            assert await anext(lines) == ": keep-alive"


async def test_a_finished_job_whose_last_event_was_lost_still_ends_its_stream(http, service, alice):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"], JobStatus.COMPLETED)
    await _publish(service, job, 1)
    async with asyncio.timeout(KEEPALIVE_S * 10):
        async with http.stream("GET", f"/api/v1/jobs/{job.id}/events", headers=alice.headers) as response:
            events = await read_sse(response.aiter_lines())
        result = await read_socket(f"{service.ws_url}/ws/jobs/{job.id}", alice.headers)
    assert [e.data["sequence"] for e in events] == [1]
    assert [m["sequence"] for m in result.messages] == [1] and result.close_code == 1000


async def test_a_bad_event_id_is_422_for_sse_and_4422_for_websockets(http, service, alice):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"])
    url = f"/api/v1/jobs/{job.id}/events"
    response = await http.get(url, headers={**alice.headers, "Last-Event-ID": "yesterday"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "header.Last-Event-ID"
    response = await http.get(url, params={"after": "x-1"}, headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "query.after"
    result = await read_socket(f"{service.ws_url}/ws/jobs/{job.id}?after=nope", alice.headers)
    assert result.close_code == 4422 and "invalid event id" in result.close_reason


@pytest.mark.parametrize("path", ["/ws/jobs/{job}", "/ws/workflow/{workflow}"])
async def test_sockets_without_a_valid_token_are_closed_with_4401(http, service, alice, path):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"])
    url = service.ws_url + path.format(job=job.id, workflow=workflow["id"])
    for headers, query in (({}, ""), ({"Authorization": "Bearer forged"}, ""), ({}, "?token=forged")):
        result = await read_socket(url + query, headers)
        assert (result.messages, result.close_code) == ([], 4401), (headers, query)
        assert result.close_reason in ("missing bearer token", "malformed token")


async def test_sse_accepts_the_token_as_a_query_parameter(http, service, alice):
    workflow = await create_workflow(http, alice)
    job = await _stored_job(service, alice.sub, workflow["id"])
    await _publish(service, job, 1, EventType.JOB_CANCELLED)
    async with http.stream("GET", f"/api/v1/jobs/{job.id}/events", params={"token": alice.token}) as response:
        assert response.status_code == 200
        assert [e.event for e in await read_sse(response.aiter_lines())] == ["job_cancelled"]
    unauthenticated = await http.get(f"/api/v1/jobs/{job.id}/events")
    assert unauthenticated.status_code == 401
