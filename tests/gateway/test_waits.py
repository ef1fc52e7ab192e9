"""Jobs that wait, through the gateway on real Ray (MAX_ACTIVE_JOBS=2, warm runners): approvals and
signals, what a job waits for, the approver's inbox, and tenancy (another user sees none of it; a listed
approver may decide and sees nothing else)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from tests.gateway.support import User, create_workflow, execute, linear_definition, new_user, wait_for_job

pytestmark = pytest.mark.timeout(120)


def approval_definition(approvers: list[str] | None = None, **config: Any) -> dict[str, Any]:
    return {
        "name": "review",
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "review",
                "type": "approval",
                "config": {"message": "ship {{input.title}}?", "approvers": approvers or [], **config},
            },
            {"id": "ship", "type": "transform", "config": {"template": "shipped"}},
            {"id": "hold", "type": "transform", "config": {"template": "held"}},
        ],
        "edges": [
            {"source": "start", "target": "review"},
            {"source": "review", "target": "ship"},
            {"source": "review", "target": "hold"},
        ],
    }


ROUTED = {"approve_edge": "ship", "reject_edge": "hold"}


async def waiting_job(http, user: User, workflow_id: str, title: str = "v2") -> dict:
    """Start a job and return it once its approval waits."""
    job = await execute(http, user, workflow_id, {"title": title})
    deadline = time.monotonic() + 60
    while True:
        record = (await http.get(f"/api/v1/jobs/{job['id']}", headers=user.headers)).json()
        if record["waiting_on"]:
            return record
        assert record["status"] in ("pending", "running"), record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.05)


async def send(http, user: User, job_id: str, name: str, body: Any, **headers: str):
    return await http.post(
        f"/api/v1/jobs/{job_id}/signals/{name}", json=body, headers={**user.headers, **headers}
    )


async def test_an_approved_job_routes_to_its_approve_edge(http, alice):
    workflow = await create_workflow(http, alice, approval_definition(**ROUTED))
    job = await waiting_job(http, alice, workflow["id"])
    assert job["status"] == "running" and job["waiting_on"] == ["review"]
    assert job["nodes"]["review"]["status"] == "waiting"

    waits = (await http.get(f"/api/v1/jobs/{job['id']}/waits", headers=alice.headers)).json()
    assert [(w["node_id"], w["kind"], w["signal"], w["message"], w["deadline"]) for w in waits] == [
        ("review", "approval", "review", "ship v2?", None)
    ]
    inbox = (await http.get("/api/v1/approvals", headers=alice.headers)).json()
    assert [(a["job_id"], a["node_id"], a["message"]) for a in inbox["items"]] == [
        (job["id"], "review", "ship v2?")
    ]

    response = await send(http, alice, job["id"], "review", {"approved": True, "comment": "go", "data": [1]})
    assert response.status_code == 202, response.text
    done = await wait_for_job(http, alice, job["id"])
    assert done["status"] == "completed", done
    output = done["nodes"]["review"]["output"]
    assert (output["approved"], output["by"], output["comment"], output["data"]) == (
        True,
        alice.sub,
        "go",
        [1],
    )
    assert (done["nodes"]["ship"]["status"], done["nodes"]["hold"]["status"]) == ("completed", "skipped")
    assert done["waiting_on"] == []
    assert (await http.get("/api/v1/approvals", headers=alice.headers)).json()["items"] == []


async def test_a_rejection_without_a_reject_edge_fails_the_job(http, alice):
    workflow = await create_workflow(http, alice, approval_definition())
    job = await waiting_job(http, alice, workflow["id"])
    assert (
        await send(http, alice, job["id"], "review", {"approved": False, "comment": "no"})
    ).status_code == 202
    done = await wait_for_job(http, alice, job["id"])
    assert done["status"] == "failed"
    assert done["nodes"]["review"]["error"]["type"] == "node_error"
    assert done["nodes"]["review"]["error"]["message"] == f"rejected by {alice.sub}: no"


async def test_an_approval_decision_needs_approved_and_an_ended_job_takes_no_signal(http, alice):
    workflow = await create_workflow(http, alice, approval_definition(**ROUTED))
    job = await waiting_job(http, alice, workflow["id"])
    refused = await send(http, alice, job["id"], "review", {"comment": "forgot"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "body.approved"
    assert (await send(http, alice, job["id"], "review", {"approved": True})).status_code == 202
    await wait_for_job(http, alice, job["id"])
    late = await send(http, alice, job["id"], "review", {"approved": False})
    assert late.status_code == 409, late.text
    missing = await send(http, alice, "no-such-job", "review", {"approved": True})
    assert missing.status_code == 404


async def test_a_repeated_idempotency_key_is_delivered_once(http, alice):
    definition = {
        "name": "two waits",
        "nodes": [
            {"id": "first", "type": "wait", "config": {"signal": "tick"}},
            {
                "id": "second",
                "type": "wait",
                "config": {"signal": "tick", "timeout_s": 2, "on_timeout": "continue"},
            },
        ],
        "edges": [{"source": "first", "target": "second"}],
    }
    workflow = await create_workflow(http, alice, definition)
    job = await execute(http, alice, workflow["id"], {})
    one = await send(http, alice, job["id"], "tick", {"n": 1}, **{"Idempotency-Key": "delivery-1"})
    two = await send(http, alice, job["id"], "tick", {"n": 1}, **{"Idempotency-Key": "delivery-1"})
    assert (one.status_code, two.status_code) == (202, 202)
    assert two.json()["id"] == one.json()["id"] and two.json()["duplicate"] is True
    done = await wait_for_job(http, alice, job["id"])
    assert done["status"] == "completed", done
    assert done["nodes"]["first"]["output"] == {"n": 1}
    assert done["nodes"]["second"]["output"] is None, "the repeated send was not delivered a second time"
    late = await send(http, alice, job["id"], "tick", {"n": 1}, **{"Idempotency-Key": "delivery-1"})
    assert late.status_code == 202 and late.json()["id"] == one.json()["id"], "a retry after the end: 202"


async def test_waiting_jobs_hold_no_admission_slot(http, alice):
    """MAX_ACTIVE_JOBS is 2: three waiting jobs and a plain one after them still run to their end."""
    workflow = await create_workflow(http, alice, approval_definition(**ROUTED))
    waiting = [await waiting_job(http, alice, workflow["id"], f"t{i}") for i in range(3)]
    plain = await create_workflow(http, alice, linear_definition())
    quick = await wait_for_job(
        http, alice, (await execute(http, alice, plain["id"], {"name": "x"}))["id"], 30
    )
    assert quick["status"] == "completed"
    for job in waiting:
        assert (await send(http, alice, job["id"], "review", {"approved": True})).status_code == 202
    for job in waiting:
        assert (await wait_for_job(http, alice, job["id"]))["status"] == "completed"


async def test_cancel_works_on_a_waiting_job(http, alice):
    workflow = await create_workflow(http, alice, approval_definition(**ROUTED))
    job = await waiting_job(http, alice, workflow["id"])
    response = await http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert response.status_code == 200, response.text
    done = await wait_for_job(http, alice, job["id"])
    assert done["status"] == "cancelled" and done["nodes"]["review"]["status"] == "cancelled"
    assert done["waiting_on"] == []


async def test_another_user_sees_nothing_and_a_listed_approver_may_only_decide(http, alice, bob):
    carol = new_user("carol")
    workflow = await create_workflow(http, alice, approval_definition([carol.sub], **ROUTED))
    job = await waiting_job(http, alice, workflow["id"])
    job_id = job["id"]

    assert (await http.get(f"/api/v1/jobs/{job_id}/waits", headers=bob.headers)).status_code == 404
    assert (await send(http, bob, job_id, "review", {"approved": True})).status_code == 404
    assert (await http.get("/api/v1/approvals", headers=bob.headers)).json()["items"] == []

    assert (await http.get(f"/api/v1/jobs/{job_id}", headers=carol.headers)).status_code == 404
    assert (await http.get(f"/api/v1/jobs/{job_id}/waits", headers=carol.headers)).status_code == 404
    assert (await send(http, carol, job_id, "other", {})).status_code == 404, "only the approval's signal"
    inbox = (await http.get("/api/v1/approvals", headers=carol.headers)).json()["items"]
    assert [(a["job_id"], a["node_id"]) for a in inbox] == [(job_id, "review")]
    assert set(inbox[0]) == {"job_id", "node_id", "signal", "message", "since", "deadline"}
    assert inbox[0]["signal"] == "review"

    decided = await send(http, carol, job_id, "review", {"approved": False, "comment": "not yet"})
    assert decided.status_code == 202, decided.text
    done = await wait_for_job(http, alice, job_id)
    assert done["nodes"]["review"]["output"]["by"] == carol.sub
    assert done["nodes"]["hold"]["status"] == "completed"


async def test_a_signal_sent_before_its_node_waits_is_taken_when_it_does(http, alice):
    definition = {
        "name": "early signal",
        "nodes": [
            {"id": "pause", "type": "wait", "config": {"delay_s": 1}},
            {"id": "hook", "type": "wait", "config": {"signal": "paid"}},
        ],
        "edges": [{"source": "pause", "target": "hook"}],
    }
    workflow = await create_workflow(http, alice, definition)
    job = await execute(http, alice, workflow["id"], {})
    sent = await send(http, alice, job["id"], "paid", {"amount": 9})
    assert sent.status_code == 202, sent.text
    done = await wait_for_job(http, alice, job["id"])
    assert done["status"] == "completed", done
    assert done["nodes"]["hook"]["output"] == {"amount": 9}
    stored_at = datetime.fromisoformat(sent.json()["created_at"])
    assert stored_at < datetime.fromisoformat(done["nodes"]["hook"]["started_at"]), "sent before it waited"


@pytest.mark.parametrize(("on_timeout", "status"), [("continue", "completed"), ("fail", "failed")])
async def test_a_signal_wait_times_out_each_way(http, alice, on_timeout, status):
    definition = {
        "name": f"timeout {on_timeout}",
        "nodes": [
            {
                "id": "hook",
                "type": "wait",
                "config": {"signal": "s", "timeout_s": 0.5, "on_timeout": on_timeout},
            }
        ],
        "edges": [],
    }
    workflow = await create_workflow(http, alice, definition)
    done = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {}))["id"])
    assert done["status"] == status, done
    hook = done["nodes"]["hook"]
    if on_timeout == "continue":
        assert hook["output"] is None
    else:
        assert hook["error"]["type"] == "wait_timeout"


async def test_a_child_jobs_signal_cannot_be_sent_by_a_user(http, alice):
    workflow = await create_workflow(http, alice, approval_definition(**ROUTED))
    job = await waiting_job(http, alice, workflow["id"])
    forged = await send(http, alice, job["id"], "child:0123", {"status": "completed", "result": 1})
    assert forged.status_code == 422, forged.text
    assert forged.json()["errors"][0]["field"] == "path.name"
    assert (await http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)).status_code == 200
