"""Jobs through the real runtime: execute (202), status with per-node detail, idempotency, logs,
cancel (200 or 409), listing with filters, and jobs that outlive their workflow's update or delete."""

from __future__ import annotations

import asyncio
import uuid

from engine.records import JobRecord, JobStatus
from tests.gateway.support import create_workflow, execute, linear_definition, wait_for_job


async def test_execute_answers_202_and_the_job_completes_with_per_node_detail(http, alice):
    workflow = await create_workflow(http, alice)
    response = await http.post(
        f"/api/v1/workflows/{workflow['id']}/execute", json={"name": "Ada"}, headers=alice.headers
    )
    assert response.status_code == 202
    accepted = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{accepted['id']}"
    assert (accepted["status"], accepted["workflow_version"], accepted["owner"]) == ("pending", 1, alice.sub)
    assert accepted["input"] == {"name": "Ada"}

    job = await wait_for_job(http, alice, accepted["id"])
    assert job["status"] == "completed", job
    assert job["result"] == {"greet": {"text": "Hello Ada"}}
    assert job["error"] is None and job["duration_s"] >= 0
    assert set(job["nodes"]) == {"start", "greet", "end"}
    for node in job["nodes"].values():
        assert (node["status"], node["attempts"]) == ("completed", 1)
        assert node["started_at"] <= node["finished_at"] and node["duration_s"] >= 0
    assert job["nodes"]["greet"]["output"] == {"text": "Hello Ada"}
    assert job["nodes"]["greet"]["node_type"] == "transform"
    assert "version" not in job and "actor_name" not in job


async def test_an_empty_body_is_an_empty_input_and_a_non_object_is_422(http, alice):
    workflow = await create_workflow(http, alice)
    url = f"/api/v1/workflows/{workflow['id']}/execute"
    empty = await http.post(url, headers=alice.headers)
    assert empty.status_code == 202 and empty.json()["input"] == {}
    listed = await http.post(url, json=["not", "an", "object"], headers=alice.headers)
    assert listed.status_code == 422 and listed.json()["errors"]
    done = await wait_for_job(http, alice, empty.json()["id"])
    assert done["status"] == "failed", done
    assert "name" in done["nodes"]["greet"]["error"]["message"], done


async def test_a_repeated_idempotency_key_returns_the_same_job(http, alice):
    workflow = await create_workflow(http, alice)
    url = f"/api/v1/workflows/{workflow['id']}/execute"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await http.post(url, json={"name": "a"}, headers={**alice.headers, **key})
    again = await http.post(url, json={"name": "a"}, headers={**alice.headers, **key})
    other = await http.post(url, json={"name": "a"}, headers={**alice.headers, "Idempotency-Key": "another"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    listed = await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=alice.headers)
    assert listed.json()["total"] == 2
    for job_id in (first.json()["id"], other.json()["id"]):
        await wait_for_job(http, alice, job_id)


async def _logs_through_the_end(http, user, url: str) -> dict:
    """The job's logs once its last line is written (a commit's lines follow its checkpoint)."""
    async with asyncio.timeout(10):
        while True:
            logs = (await http.get(url, headers=user.headers)).json()
            if logs["items"] and logs["items"][-1]["message"] == "job: completed":
                return logs
            await asyncio.sleep(0.05)


async def test_logs_are_paginated_oldest_first(http, alice):
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "x"}))["id"])
    url = f"/api/v1/jobs/{job['id']}/logs"
    everything = await _logs_through_the_end(http, alice, url)
    assert everything["total"] == len(everything["items"]) >= 4
    assert everything["items"][0]["message"] == "job: started"
    assert everything["items"][-1]["message"] == "job: completed"
    page = (await http.get(url, params={"offset": 1, "limit": 2}, headers=alice.headers)).json()
    assert (page["total"], page["offset"], page["limit"]) == (everything["total"], 1, 2)
    assert page["items"] == everything["items"][1:3]


async def test_cancelling_a_finished_job_is_409(http, alice):
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "x"}))["id"])
    response = await http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert response.status_code == 409
    assert "already completed" in response.json()["detail"] and response.json()["errors"] == []


async def test_cancelling_a_pending_job_answers_the_cancelled_job(http, service, alice):
    workflow = await create_workflow(http, alice)
    queued = await service.runtime.store.create_job(
        JobRecord(id=uuid.uuid4().hex, owner=alice.sub, workflow_id=workflow["id"], workflow_version=1)
    )
    response = await http.post(f"/api/v1/jobs/{queued.id}/cancel", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled" and response.json()["finished_at"]
    again = await http.post(f"/api/v1/jobs/{queued.id}/cancel", headers=alice.headers)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_jobs_are_listed_by_workflow_and_status(http, service, alice):
    first, second = await create_workflow(http, alice), await create_workflow(http, alice)
    done = [await execute(http, alice, first["id"], {"name": str(i)}) for i in range(3)]
    for job in done:
        await wait_for_job(http, alice, job["id"])
    await execute(http, alice, second["id"], {})
    cancelled = await service.runtime.store.create_job(
        JobRecord(
            id=uuid.uuid4().hex,
            owner=alice.sub,
            workflow_id=first["id"],
            workflow_version=1,
            status=JobStatus.CANCELLED,
        )
    )

    by_workflow = (
        await http.get("/api/v1/jobs", params={"workflow_id": first["id"]}, headers=alice.headers)
    ).json()
    assert by_workflow["total"] == 4
    assert {job["workflow_id"] for job in by_workflow["items"]} == {first["id"]}
    assert set(by_workflow["items"][0]) >= {"id", "status", "workflow_version", "created_at", "duration_s"}
    assert "nodes" not in by_workflow["items"][0]

    params = {"workflow_id": first["id"], "status": ["completed", "cancelled"], "limit": 2}
    page = (await http.get("/api/v1/jobs", params=params, headers=alice.headers)).json()
    assert (page["total"], len(page["items"])) == (4, 2)
    only_cancelled = await http.get(
        "/api/v1/jobs", params={"workflow_id": first["id"], "status": "cancelled"}, headers=alice.headers
    )
    assert [job["id"] for job in only_cancelled.json()["items"]] == [cancelled.id]
    bad = await http.get("/api/v1/jobs", params={"status": "sleeping"}, headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.status.0"


async def test_a_job_runs_the_version_it_started_with_and_outlives_a_delete(http, alice):
    workflow = await create_workflow(http, alice)
    url = f"/api/v1/workflows/{workflow['id']}"
    second = linear_definition("v2")
    second["nodes"][1]["config"]["template"] = {"text": "Bye {{input.name}}"}
    assert (await http.put(url, json=second, headers=alice.headers)).status_code == 200
    job = await execute(http, alice, workflow["id"], {"name": "Bo"})
    assert job["workflow_version"] == 2
    assert (await http.delete(url, headers=alice.headers)).status_code == 204
    finished = await wait_for_job(http, alice, job["id"])
    assert finished["status"] == "completed" and finished["result"] == {"greet": {"text": "Bye Bo"}}
    assert (await http.post(f"{url}/execute", json={}, headers=alice.headers)).status_code == 404


async def test_unknown_jobs_are_404(http, alice):
    for path in ("", "/logs", "/cancel"):
        method = "POST" if path == "/cancel" else "GET"
        response = await http.request(method, f"/api/v1/jobs/{uuid.uuid4().hex}{path}", headers=alice.headers)
        assert response.status_code == 404 and "not found" in response.json()["detail"]
