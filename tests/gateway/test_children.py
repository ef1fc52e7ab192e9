"""Sub-workflows through the gateway on real Ray: a called workflow must be the caller's when the workflow is
stored; a child job names its parent, the parent's node its child, the listing filters by parent; another
user sees neither."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.support import User, create_workflow, execute, wait_for_job

pytestmark = pytest.mark.timeout(120)

DOUBLE = {
    "name": "double",
    "nodes": [{"id": "twice", "type": "transform", "config": {"template": {"n": "{{ input.n * 2 }}"}}}],
    "edges": [],
}


def calling(workflow_id: str) -> dict[str, Any]:
    node = {
        "id": "call",
        "type": "workflow",
        "config": {"workflow_id": workflow_id, "input": {"n": "{{input.n}}"}},
    }
    return {"name": "parent", "nodes": [node], "edges": []}


async def test_a_called_workflow_must_be_the_callers_when_stored(http, alice: User, bob: User):
    bobs = await create_workflow(http, bob, DOUBLE)
    for called in (bobs["id"], "no-such-workflow"):
        refused = await http.post("/api/v1/workflows", json=calling(called), headers=alice.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"] == [
            {"node_id": "call", "field": "config.workflow_id", "message": f"workflow {called} not found"}
        ]
    templated = await http.post("/api/v1/workflows", json=calling("{{input.which}}"), headers=alice.headers)
    assert templated.status_code == 201, "a templated id is checked when the node runs"


async def test_a_child_job_names_its_parent_and_only_its_owner_sees_it(http, alice: User, bob: User):
    child_workflow = await create_workflow(http, alice, DOUBLE)
    parent_workflow = await create_workflow(http, alice, calling(child_workflow["id"]))
    parent = await wait_for_job(
        http, alice, (await execute(http, alice, parent_workflow["id"], {"n": 4}))["id"]
    )
    assert parent["status"] == "completed" and parent["result"] == {"call": {"twice": {"n": 8}}}
    (child_id,) = parent["nodes"]["call"]["child_job_ids"]
    assert parent["nodes"]["call"]["wait"]["kind"] == "child"

    child = (await http.get(f"/api/v1/jobs/{child_id}", headers=alice.headers)).json()
    assert (child["parent_job_id"], child["parent_node_id"], child["owner"]) == (
        parent["id"],
        "call",
        alice.sub,
    )
    listed = await http.get("/api/v1/jobs", params={"parent_job_id": parent["id"]}, headers=alice.headers)
    assert [job["id"] for job in listed.json()["items"]] == [child_id]

    assert (await http.get(f"/api/v1/jobs/{child_id}", headers=bob.headers)).status_code == 404
    theirs = await http.get("/api/v1/jobs", params={"parent_job_id": parent["id"]}, headers=bob.headers)
    assert theirs.json()["items"] == []


async def test_a_map_of_workflow_items_must_call_a_workflow_of_the_caller_too(http, alice: User, bob: User):
    bobs = await create_workflow(http, bob, DOUBLE)
    item = {"type": "workflow", "config": {"workflow_id": bobs["id"], "input": {"n": "{{item}}"}}}
    fan = {"id": "fan", "type": "map", "config": {"items": [1, 2], "node": item}}
    refused = await http.post(
        "/api/v1/workflows", json={"name": "fan", "nodes": [fan], "edges": []}, headers=alice.headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {
            "node_id": "fan",
            "field": "config.node.config.workflow_id",
            "message": f"workflow {bobs['id']} not found",
        }
    ]
