"""A stored row that cannot be read, in the gateway's real SQLite file: listings go on without it, a read
of it by id is 409, each is logged with its id, and /health counts them.

The rows are damaged the way the service itself once wrote them: a node checkpoint nested 220 levels
deep (json.dumps wrote it; pydantic-core's parser stops at 200), and a definition cut short."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from tests.gateway.support import create_workflow, execute, read_socket, wait_for_job
from tests.support.nesting import nested


def damage(path: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute(statement, params).rowcount == 1


async def unreadable_count(http) -> int:
    return (await http.get("/health")).json()["store"]["unreadable_rows"]


async def test_a_job_that_cannot_be_read_is_left_out_of_listings_and_answers_409(
    http, service, alice, admin, caplog
):
    workflow = await create_workflow(http, alice)
    kept = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "A"}))["id"])
    damaged = await wait_for_job(
        http, alice, (await execute(http, alice, workflow["id"], {"name": "B"}))["id"]
    )
    checkpoint = {"node_id": "greet", "node_type": "transform", "status": "completed", "output": nested(220)}
    damage(
        service.runtime.store.path,
        "UPDATE job_nodes SET checkpoint = ? WHERE job_id = ? AND node_id = 'greet'",
        json.dumps(checkpoint),
        damaged["id"],
    )
    before = await unreadable_count(http)

    caplog.set_level(logging.ERROR, logger="storage.readable")
    for user in (alice, admin):
        listing = await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=user.headers)
        assert listing.status_code == 200, listing.text
        page = listing.json()
        assert ([job["id"] for job in page["items"]], page["total"]) == ([kept["id"]], 2)
    for url in (f"/api/v1/jobs/{damaged['id']}", f"/api/v1/jobs/{damaged['id']}/logs"):
        read = await http.get(url, headers=alice.headers)
        assert read.status_code == 409, read.text
        assert read.json()["detail"].startswith(f"job {damaged['id']} is stored but cannot be read")
    cancel = await http.post(f"/api/v1/jobs/{damaged['id']}/cancel", headers=alice.headers)
    assert cancel.status_code == 409
    events = await http.get(f"/api/v1/jobs/{damaged['id']}/events", headers=alice.headers)
    assert events.status_code == 409, events.text
    socket = await read_socket(f"{service.ws_url}/ws/jobs/{damaged['id']}", alice.headers)
    assert socket.close_code == 4409 and "cannot be read" in socket.close_reason

    assert await unreadable_count(http) == before + 1, "counted once, however often it was met"
    logged = [record for record in caplog.records if damaged["id"] in record.getMessage()]
    assert len(logged) == 1 and "recursion limit exceeded" in logged[0].getMessage()
    assert (await http.get(f"/api/v1/jobs/{kept['id']}", headers=alice.headers)).status_code == 200


async def test_a_workflow_that_cannot_be_read_is_left_out_of_listings_and_answers_409(
    http, service, alice, admin
):
    kept = await create_workflow(http, alice)
    damaged = await create_workflow(http, alice)
    damage(
        service.runtime.store.path,
        "UPDATE workflows SET definition = ? WHERE id = ?",
        '{"name": "cut',
        damaged["id"],
    )
    before = await unreadable_count(http)
    listing = await http.get("/api/v1/workflows", params={"limit": 500}, headers=alice.headers)
    assert listing.status_code == 200, listing.text
    assert [workflow["id"] for workflow in listing.json()["items"]] == [kept["id"]]
    assert listing.json()["total"] == 2
    everyone = await http.get("/api/v1/workflows", params={"limit": 500}, headers=admin.headers)
    assert everyone.status_code == 200 and damaged["id"] not in {w["id"] for w in everyone.json()["items"]}
    for method, url in (
        ("GET", f"/api/v1/workflows/{damaged['id']}"),
        ("POST", f"/api/v1/workflows/{damaged['id']}/execute"),
        ("DELETE", f"/api/v1/workflows/{damaged['id']}"),
    ):
        response = await http.request(method, url, headers=alice.headers)
        assert response.status_code == 409, (method, url, response.text)
    socket = await read_socket(f"{service.ws_url}/ws/workflow/{damaged['id']}", alice.headers)
    assert socket.close_code == 4409
    assert await unreadable_count(http) == before + 1
