"""An agent's approval tool, end to end on real Ray in a real browser: the agent pauses at the call, the
approval shows in the viewer and in a listed approver's inbox (who sees nothing else of the job), the
owner approves it in the viewer, and the agent goes on with the decision as the call's result."""

from __future__ import annotations

import httpx
import pytest

from tests.support.openai_server import ScriptedReply
from tests.ui.support import create_workflow, execute, sign_in_as, ui_url, wait_for_job, wait_for_node

pytestmark = pytest.mark.timeout(90)

MESSAGE = "Refund 40 EUR to ann?"


def refunding_agent() -> dict:
    refund = {
        "name": "refund",
        "description": "refunds an amount, once a person approves",
        "parameters": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
            "required": ["amount", "to"],
        },
        "node": {
            "type": "approval",
            "config": {"message": "Refund {{args.amount}} EUR to {{args.to}}?", "approvers": ["bob"]},
        },
    }
    config = {"model": "m", "prompt": "handle the refund request", "tools": [refund]}
    agent = {"id": "agent", "type": "agent", "config": config}
    return {"name": "Refund agent", "nodes": [agent], "edges": []}


async def test_an_agents_approval_tool_waits_in_the_viewer_and_is_approved_there(page, ui_service, model):
    model.script(
        ScriptedReply(text="asking first", tool_calls=(("refund", {"amount": 40, "to": "ann"}),)),
        ScriptedReply(text="refunded 40 EUR"),
    )
    browser = page.page
    ann, bob = ui_service.headers("ann"), ui_service.headers("bob")
    workflow = await create_workflow(ui_service.base_url, ann, refunding_agent())
    job = await execute(ui_service.base_url, ann, workflow["id"], {})
    await sign_in_as(browser, ui_service.base_url, "ann")
    await browser.goto(ui_url(ui_service.base_url, f"jobs/{job['id']}"))
    await wait_for_node(browser, "agent", "waiting")

    async with httpx.AsyncClient(base_url=ui_service.base_url, timeout=30) as http:
        inbox = (await http.get("/api/v1/approvals", headers=bob)).json()["items"]
        assert [(a["job_id"], a["node_id"], a["signal"], a["message"]) for a in inbox] == [
            (job["id"], "agent", "agent.0.0", MESSAGE)
        ]
        assert (await http.get(f"/api/v1/jobs/{job['id']}", headers=bob)).status_code == 404
        stored = (await http.get(f"/api/v1/jobs/{job['id']}", headers=ann)).json()
        assert stored["nodes"]["agent"]["steps"] == ["turn-0"]

    await browser.click(f"#job-waiting button:text-is('waiting for approval: {MESSAGE}')")
    await browser.wait_for_selector("#node-wait:not([hidden])")
    assert await browser.text_content("#wait-message") == MESSAGE
    await browser.fill("#approval-comment", "ok")
    await browser.click("#approve")
    await browser.wait_for_selector("#job-status [data-status='completed']")
    await wait_for_node(browser, "agent", "completed")
    assert await browser.is_hidden("#node-wait")

    done = await wait_for_job(ui_service.base_url, ann, job["id"])
    output = done["nodes"]["agent"]["output"]
    assert output["text"] == "refunded 40 EUR"
    decision = output["steps"][0]["tool_calls"][0]["output"]
    assert (decision["approved"], decision["by"], decision["comment"]) == (True, "ann", "ok")
    assert done["nodes"]["agent"]["attempts"] == 1
