"""Jobs that wait, in the run viewer: an approval node shows as waiting, with its message in the job's
header and in the node's panel, and is approved or rejected there; the live stream then shows the node
completing and the branch its decision routes to. A decision the service refuses shows its error and
can be sent again."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page

from tests.ui.support import (
    create_workflow,
    execute,
    job_events,
    sign_in_as,
    ui_url,
    wait_for_job,
    wait_for_node,
)

pytestmark = pytest.mark.timeout(90)

MESSAGE = "Refund 40 EUR?"
COMMENT_LIMIT = 10_000


def refund_workflow() -> dict:
    """start -> an approval of the input's amount -> refund when approved, decline when rejected."""
    return {
        "name": "Approve the refund",
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "approve_refund",
                "type": "approval",
                "config": {
                    "message": "Refund {{input.amount}} EUR?",
                    "timeout_s": 3600,
                    "approve_edge": "refund",
                    "reject_edge": "decline",
                },
            },
            {"id": "refund", "type": "transform", "config": {"template": "refunded {{input.amount}}"}},
            {"id": "decline", "type": "transform", "config": {"template": "declined"}},
        ],
        "edges": [
            {"source": "start", "target": "approve_refund"},
            {"source": "approve_refund", "target": "refund"},
            {"source": "approve_refund", "target": "decline"},
        ],
    }


async def _waits(base_url: str, headers: dict[str, str], job_id: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        response = await http.get(f"/api/v1/jobs/{job_id}/waits")
        assert response.status_code == 200, response.text
        return response.json()


async def _local_time(browser: Page, iso: str) -> str:
    """A time as the page shows it, in the browser's locale."""
    return await browser.evaluate("(iso) => new Date(iso).toLocaleString()", iso)


async def _open_waiting_job(browser: Page, base_url: str, headers: dict[str, str], user: str) -> str:
    """A job of the refund workflow, opened in the viewer once its approval waits, the node's panel open
    from the job's header."""
    workflow = await create_workflow(base_url, headers, refund_workflow())
    job = await execute(base_url, headers, workflow["id"], {"amount": 40})
    await sign_in_as(browser, base_url, user)
    await browser.goto(ui_url(base_url, f"jobs/{job['id']}"))
    await wait_for_node(browser, "approve_refund", "waiting")
    assert await browser.get_attribute("#job-status .badge", "data-status") == "running"
    await browser.click(f"#job-waiting button:text-is('waiting for approval: {MESSAGE}')")
    await browser.wait_for_selector("#node-wait:not([hidden])")
    return job["id"]


async def test_an_approval_waits_in_the_viewer_and_is_approved_there_with_a_comment(page, ui_service):
    browser = page.page
    headers = ui_service.headers("ann")
    job_id = await _open_waiting_job(browser, ui_service.base_url, headers, "ann")
    assert sorted(await browser.locator("text.edge-label").all_text_contents()) == ["approved", "rejected"]
    assert await browser.text_content("#wait-kind") == "approval"
    assert await browser.text_content("#wait-message") == MESSAGE
    [wait] = await _waits(ui_service.base_url, headers, job_id)
    assert await browser.text_content("#wait-since") == await _local_time(browser, wait["since"])
    assert await browser.text_content("#wait-deadline") == await _local_time(browser, wait["deadline"])
    assert await browser.get_attribute("#node-title .badge", "data-status") == "waiting"

    await browser.fill("#approval-comment", "  fine by me ")
    await browser.click("#approve")
    await browser.wait_for_selector("#job-status [data-status='completed']")
    await wait_for_node(browser, "approve_refund", "completed")
    await wait_for_node(browser, "refund", "completed")
    await wait_for_node(browser, "decline", "skipped")
    assert await browser.is_hidden("#node-wait"), "no wait once the node has completed"
    assert await browser.text_content("#job-waiting") == ""
    await browser.wait_for_selector("#node-output pre:has-text('\"approved\": true')")
    output = await browser.text_content("#node-output pre")
    assert '"comment": "fine by me"' in output and '"by": "ann"' in output
    await browser.wait_for_selector("#job-result pre:has-text('refunded 40')")

    job = await wait_for_job(ui_service.base_url, headers, job_id)
    decision = job["nodes"]["approve_refund"]["output"]
    assert (decision["approved"], decision["comment"], decision["by"]) == (True, "fine by me", "ann")
    shown = await browser.locator("#events li").evaluate_all("rows => rows.map(r => r.dataset.type)")
    events = await job_events(ui_service.base_url, headers, job_id)
    assert shown == [event["type"] for event in events if event["sequence"]]
    mine = [event["type"] for event in events if event["node_id"] == "approve_refund"]
    assert mine[-3:] == ["node_waiting", "signal_received", "node_completed"]


async def test_a_rejection_from_the_viewer_routes_to_the_reject_edge(page, ui_service):
    browser = page.page
    headers = ui_service.headers("rob")
    job_id = await _open_waiting_job(browser, ui_service.base_url, headers, "rob")
    await browser.fill("#approval-comment", "over the limit")
    await browser.click("#reject")
    await browser.wait_for_selector("#job-status [data-status='completed']")
    await wait_for_node(browser, "decline", "completed")
    await wait_for_node(browser, "refund", "skipped")
    await browser.wait_for_selector("#node-output pre:has-text('\"approved\": false')")
    assert '"comment": "over the limit"' in await browser.text_content("#node-output pre")

    job = await wait_for_job(ui_service.base_url, headers, job_id)
    assert job["result"] == {"decline": "declined"}
    assert job["nodes"]["refund"]["status"] == "skipped"


async def test_a_decision_the_service_refuses_shows_its_error_and_can_be_sent_again(page, ui_service):
    page.allow("status of 422")
    browser = page.page
    headers = ui_service.headers("vera")
    job_id = await _open_waiting_job(browser, ui_service.base_url, headers, "vera")
    await browser.fill("#approval-comment", "x" * (COMMENT_LIMIT + 1))
    await browser.click("#approve")
    await browser.wait_for_selector("#approval-status.error:has-text('body.comment')")
    assert await browser.is_enabled("#approve") and await browser.is_enabled("#reject")
    await wait_for_node(browser, "approve_refund", "waiting")

    await browser.fill("#approval-comment", "shorter")
    await browser.click("#approve")
    await wait_for_node(browser, "approve_refund", "completed")
    job = await wait_for_job(ui_service.base_url, headers, job_id)
    assert job["nodes"]["approve_refund"]["output"]["comment"] == "shorter"
