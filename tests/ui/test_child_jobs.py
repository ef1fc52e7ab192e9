"""Sub-workflows in the run viewer: a workflow node's panel links the child jobs it started, with their
statuses; a child's page names the job and node it is a child of, a link back; a node waiting on its child
says which, and the parent's events update its children live, a retry's new child too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.ui.support import create_workflow, execute, sign_in_as, ui_url, wait_for_job, wait_for_node

pytestmark = pytest.mark.timeout(90)

IN_FLIGHT = ("pending", "running")

DOUBLE = {
    "name": "double",
    "nodes": [{"id": "twice", "type": "transform", "config": {"template": {"n": "{{ input.n * 2 }}"}}}],
    "edges": [],
}
APPROVED_DOUBLE = {
    "name": "double once approved",
    "nodes": [
        {"id": "check", "type": "approval", "config": {"message": "Double {{input.n}}?"}},
        {"id": "twice", "type": "transform", "config": {"template": {"n": "{{ input.n * 2 }}"}}},
    ],
    "edges": [{"source": "check", "target": "twice"}],
}


def calling(child_workflow_id: str, attempts: int = 1) -> dict[str, Any]:
    """start -> a workflow node that runs the child workflow with the input's n."""
    return {
        "name": "call a child",
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "call",
                "type": "workflow",
                "config": {"workflow_id": child_workflow_id, "input": {"n": "{{input.n}}"}},
                "retry": {"max_attempts": attempts, "backoff": 0},
            },
        ],
        "edges": [{"source": "start", "target": "call"}],
    }


def short(job_id: str) -> str:
    """An id as the page abbreviates it (dom.js shortId)."""
    return f"{job_id[:8]}…" if len(job_id) > 12 else job_id


def child_row(child_id: str) -> str:
    return f"#node-children li[data-job-id='{child_id}']"


async def _child_ids(base_url: str, headers: dict[str, str], parent_id: str) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        listed = await http.get("/api/v1/jobs", params={"parent_job_id": parent_id})
        assert listed.status_code == 200, listed.text
        return [job["id"] for job in reversed(listed.json()["items"])]


async def _decide(base_url: str, headers: dict[str, str], job_id: str, approved: bool) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        sent = await http.post(f"/api/v1/jobs/{job_id}/signals/check", json={"approved": approved})
        assert sent.status_code == 202, sent.text


async def _waiting_child(
    browser: Page, base_url: str, headers: dict[str, str], parent_id: str, count: int
) -> str:
    """The parent's `count`th child, once the parent's node waits on it and the page says so."""
    await wait_for_node(browser, "call", "waiting")
    await browser.wait_for_selector(f"#node-children li:nth-child({count}) .badge")
    child_ids = await _child_ids(base_url, headers, parent_id)
    assert len(child_ids) == count
    child_id = child_ids[-1]
    await browser.wait_for_selector(f"#job-waiting button:text-is('waiting for child job {short(child_id)}')")
    assert await browser.text_content("#wait-kind") == "child"
    assert await browser.text_content("#wait-child a") == child_id
    assert await browser.get_attribute("#wait-child a", "href") == f"#/jobs/{child_id}"
    return child_id


async def test_a_workflow_nodes_panel_links_its_child_whose_page_links_back(page, ui_service):
    browser = page.page
    base_url, headers = ui_service.base_url, ui_service.headers("carla")
    child_workflow = await create_workflow(base_url, headers, DOUBLE)
    parent_workflow = await create_workflow(base_url, headers, calling(child_workflow["id"]))
    parent_id = (await execute(base_url, headers, parent_workflow["id"], {"n": 21}))["id"]
    parent = await wait_for_job(base_url, headers, parent_id)
    assert parent["status"] == "completed", parent
    (child_id,) = parent["nodes"]["call"]["child_job_ids"]

    await sign_in_as(browser, base_url, "carla")
    await browser.goto(ui_url(base_url, f"jobs/{parent_id}"))
    await wait_for_node(browser, "call", "completed")
    await browser.click("g.dag-node[data-node-id='call']")
    link = f"{child_row(child_id)} a"
    assert await browser.text_content(link) == short(child_id)
    assert await browser.get_attribute(link, "href") == f"#/jobs/{child_id}"
    await browser.wait_for_selector(f"{child_row(child_id)} .badge[data-status='completed']")
    assert await browser.locator("#node-children li").count() == 1

    await browser.click(link)
    await browser.wait_for_url(lambda url: url.endswith(f"/jobs/{child_id}"))
    await browser.wait_for_selector("#job-parent")
    assert await browser.get_attribute("#job-parent", "href") == f"#/jobs/{parent_id}"
    header = await browser.text_content("p:has(#job-parent)")
    assert f"child of job {short(parent_id)} (node call)" in header
    assert await browser.text_content("#job-workflow") == "double"
    await browser.wait_for_selector("#job-result pre:has-text('42')")
    assert await browser.is_hidden("#node-children"), "a transform node has no children to list"

    await browser.click("#job-parent")
    await browser.wait_for_url(lambda url: url.endswith(f"/jobs/{parent_id}"))
    await wait_for_node(browser, "call", "completed")
    assert await browser.locator("#job-parent").count() == 0, "the parent is no one's child"


async def test_a_node_waiting_on_its_child_says_so_and_its_children_update_live(page, ui_service):
    """The first child is rejected (and fails), the node's retry starts a second, which is approved: the
    parent's page shows each as its events arrive, without a reload."""
    browser = page.page
    base_url, headers = ui_service.base_url, ui_service.headers("nils")
    child_workflow = await create_workflow(base_url, headers, APPROVED_DOUBLE)
    parent_workflow = await create_workflow(base_url, headers, calling(child_workflow["id"], attempts=2))
    parent_id = (await execute(base_url, headers, parent_workflow["id"], {"n": 4}))["id"]

    await sign_in_as(browser, base_url, "nils")
    await browser.goto(ui_url(base_url, f"jobs/{parent_id}"))
    await wait_for_node(browser, "call", "waiting")
    await browser.click("#job-waiting button")
    first = await _waiting_child(browser, base_url, headers, parent_id, 1)
    assert await browser.get_attribute(f"{child_row(first)} .badge", "data-status") in IN_FLIGHT

    await _decide(base_url, headers, first, approved=False)
    await browser.wait_for_selector(f"{child_row(first)} .badge[data-status='failed']")
    second = await _waiting_child(browser, base_url, headers, parent_id, 2)
    assert await browser.get_attribute(f"{child_row(second)} .badge", "data-status") in IN_FLIGHT
    shown = await browser.locator("#node-children li").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert shown == [first, second]
    assert await browser.text_content("#node-attempts") == "2"

    await _decide(base_url, headers, second, approved=True)
    await browser.wait_for_selector(f"{child_row(second)} .badge[data-status='completed']")
    await wait_for_node(browser, "call", "completed")
    await browser.wait_for_selector("#job-status [data-status='completed']")
    await browser.wait_for_selector("#job-result pre:has-text('\"n\": 8')")
    assert await browser.is_hidden("#node-wait")
    assert await browser.text_content("#job-waiting") == ""
    assert await browser.get_attribute(f"{child_row(first)} .badge", "data-status") == "failed"
    assert await browser.get_attribute("#stream-state", "data-state") == "ended", "followed live throughout"
    types = await browser.locator("#events li").evaluate_all("rows => rows.map(r => r.dataset.type)")
    assert [t for t in types if t.startswith("child_job")] == ["child_job_started", "child_job_finished"] * 2

    parent = await wait_for_job(base_url, headers, parent_id)
    assert parent["result"] == {"call": {"twice": {"n": 8}}}
