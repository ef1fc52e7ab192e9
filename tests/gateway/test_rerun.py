"""Re-running an ended job through the real runtime: 202 with a new job that keeps the old one's completed
checkpoints, `from_nodes` and `input`, and 404, 409 and 422 as for the other job routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from engine.records import JobRecord
from tests.gateway.support import create_workflow, execute, wait_for_job


def _at(node: dict, moment: str) -> datetime:
    return datetime.fromisoformat(node[moment])


async def _rerun(http, user, job_id: str, body: dict | None = None, **headers: str):
    return await http.post(f"/api/v1/jobs/{job_id}/rerun", json=body, headers={**user.headers, **headers})


def kept(node: dict, from_job: str) -> dict:
    """A node a re-run kept, as the job that ran it shows it: the same but for `kept_from`."""
    assert node["kept_from"] == from_job, node
    return {**node, "kept_from": None}


async def test_a_failed_job_reruns_from_its_checkpoints_and_the_old_job_is_untouched(http, alice):
    workflow = await create_workflow(http, alice)
    failed = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {}))["id"])
    statuses = [failed["nodes"][n]["status"] for n in ("start", "greet", "end")]
    assert statuses == ["completed", "failed", "cancelled"], failed

    response = await _rerun(http, alice, failed["id"])
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{accepted['id']}"
    assert accepted["id"] != failed["id"] and accepted["rerun_of"] == failed["id"]
    assert (accepted["workflow_id"], accepted["workflow_version"], accepted["owner"]) == (
        workflow["id"],
        1,
        alice.sub,
    )
    assert accepted["input"] == {}
    assert kept(accepted["nodes"]["start"], failed["id"]) == failed["nodes"]["start"], "kept as stored"
    again = await wait_for_job(http, alice, accepted["id"])
    assert again["status"] == "failed", "the same input fails the same way"
    assert kept(again["nodes"]["start"], failed["id"]) == failed["nodes"]["start"], "kept, not run again"
    assert _at(again["nodes"]["greet"], "started_at") > _at(failed["nodes"]["greet"], "started_at")

    fixed = await _rerun(http, alice, failed["id"], {"input": {"name": "Ada"}})
    assert fixed.status_code == 202, fixed.text
    done = await wait_for_job(http, alice, fixed.json()["id"])
    assert (done["status"], done["input"]) == ("completed", {"name": "Ada"}), done
    assert done["result"] == {"greet": {"text": "Hello Ada"}}
    assert _at(done["nodes"]["start"], "started_at") > _at(failed["nodes"]["start"], "finished_at"), "all run"

    old = (await http.get(f"/api/v1/jobs/{failed['id']}", headers=alice.headers)).json()
    assert old == failed, "the old job is untouched"
    listed = await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=alice.headers)
    assert {job["rerun_of"] for job in listed.json()["items"]} == {None, failed["id"]}


async def test_from_nodes_reruns_those_nodes_and_what_follows(http, alice):
    workflow = await create_workflow(http, alice)
    first = await execute(http, alice, workflow["id"], {"name": "Bo"})
    first = await wait_for_job(http, alice, first["id"])
    response = await _rerun(http, alice, first["id"], {"from_nodes": ["greet"]})
    assert response.status_code == 202, response.text
    again = await wait_for_job(http, alice, response.json()["id"])
    assert again["status"] == "completed" and again["result"] == first["result"]
    assert kept(again["nodes"]["start"], first["id"]) == first["nodes"]["start"]
    for node_id in ("greet", "end"):
        ran_again = _at(again["nodes"][node_id], "started_at") > _at(first["nodes"][node_id], "finished_at")
        assert ran_again, node_id


async def test_an_unknown_from_nodes_entry_is_422_naming_it(http, alice):
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "x"}))["id"])
    response = await _rerun(http, alice, job["id"], {"from_nodes": ["greet", "nope"]})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"node_id": "nope", "field": "from_nodes[1]", "message": "the workflow version has no node 'nope'"}
    ]
    unknown_field = await _rerun(http, alice, job["id"], {"from": ["greet"]})
    assert unknown_field.status_code == 422


async def test_only_an_ended_job_reruns_and_only_for_who_may_see_it(http, service, alice, bob, admin):
    workflow = await create_workflow(http, alice)
    pending = await service.runtime.store.create_job(
        JobRecord(id=uuid.uuid4().hex, owner=alice.sub, workflow_id=workflow["id"], workflow_version=1)
    )
    conflict = await _rerun(http, alice, pending.id)
    assert conflict.status_code == 409, conflict.text
    assert "only a job that has ended" in conflict.json()["detail"]

    done = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "x"}))["id"])
    hidden = await _rerun(http, bob, done["id"])
    assert hidden.status_code == 404 and "not found" in hidden.json()["detail"]
    listed = await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=alice.headers)
    assert listed.json()["total"] == 2, "neither refused re-run made a job"

    by_admin = await _rerun(http, admin, done["id"])
    assert by_admin.status_code == 202, by_admin.text
    assert by_admin.json()["owner"] == admin.sub, "the caller owns the re-run, as when executing"
    await wait_for_job(http, admin, by_admin.json()["id"])


async def test_a_repeated_idempotency_key_returns_the_same_rerun(http, alice):
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "x"}))["id"])
    key = uuid.uuid4().hex
    first = await _rerun(http, alice, job["id"], None, **{"Idempotency-Key": key})
    again = await _rerun(http, alice, job["id"], None, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    await wait_for_job(http, alice, first.json()["id"])
