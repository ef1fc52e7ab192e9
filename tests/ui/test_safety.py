"""Safe by construction: values from the API are shown as text and run nothing (an approval's message and
comment too), a failing node shows its error, another user's ids show "not found"."""

from __future__ import annotations

import pytest

from tests.ui.support import (
    ask_once_workflow,
    create_workflow,
    execute,
    sign_in_as,
    ui_url,
    wait_for_job,
    wait_for_node,
)

pytestmark = pytest.mark.timeout(90)

PAYLOAD = "<img src=x onerror=alert(1)>"
NAME = "<img src=x onerror=window.__pwned=1>"
GIVEN = "<b onmouseover=alert(2)>hi</b>"


def hostile_workflow() -> dict:
    return {
        "name": NAME,
        "description": "<script>window.__pwned = 2</script>",
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "echo",
                "type": "transform",
                "config": {"template": {"html": PAYLOAD, "given": "{{input.text}}"}},
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [{"source": "start", "target": "echo"}, {"source": "echo", "target": "end"}],
    }


async def test_a_node_output_of_html_shows_as_those_characters_and_runs_nothing(page, ui_service):
    browser = page.page
    headers = ui_service.headers("mallory")
    workflow = await create_workflow(ui_service.base_url, headers, hostile_workflow())
    job = await execute(ui_service.base_url, headers, workflow["id"], {"text": GIVEN})
    await wait_for_job(ui_service.base_url, headers, job["id"])

    await sign_in_as(browser, ui_service.base_url, "mallory")
    await browser.wait_for_selector(f".workflows-table td a:text-is('{NAME}')")
    await browser.goto(ui_url(ui_service.base_url, f"jobs/{job['id']}"))
    await wait_for_node(browser, "end", "completed")
    await browser.click("g.dag-node[data-node-id='echo']")
    await browser.wait_for_selector("#node-output pre")
    shown = await browser.text_content("#node-output pre")
    assert PAYLOAD in shown and GIVEN in shown
    assert PAYLOAD in await browser.text_content("#job-result pre")
    assert await browser.text_content("#job-workflow") == NAME
    await browser.goto(ui_url(ui_service.base_url, f"workflows/{workflow['id']}"))
    await browser.wait_for_selector(f"#workflow-name:text-is('{NAME}')")
    assert await browser.text_content(".description") == "<script>window.__pwned = 2</script>"
    assert await browser.locator("img, script:not([src]), [onerror], [onmouseover]").count() == 0
    assert await browser.evaluate("() => window.__pwned") is None
    assert page.dialogs == []


def hostile_approval_workflow() -> dict:
    """An approval whose message holds HTML, literal and from the input; without a reject_edge a rejection
    fails the job."""
    return {
        "name": "Approve HTML",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "review", "type": "approval", "config": {"message": f"{PAYLOAD} {{{{input.text}}}}"}},
        ],
        "edges": [{"source": "start", "target": "review"}],
    }


async def test_an_approvals_message_and_comment_of_html_show_as_those_characters(page, ui_service):
    browser = page.page
    headers = ui_service.headers("mallory")
    workflow = await create_workflow(ui_service.base_url, headers, hostile_approval_workflow())
    job = await execute(ui_service.base_url, headers, workflow["id"], {"text": GIVEN})
    message = f"{PAYLOAD} {GIVEN}"

    await sign_in_as(browser, ui_service.base_url, "mallory")
    await browser.goto(ui_url(ui_service.base_url, f"jobs/{job['id']}"))
    await wait_for_node(browser, "review", "waiting")
    assert await browser.text_content("#job-waiting button") == f"waiting for approval: {message}"
    await browser.click("g.dag-node[data-node-id='review']")
    assert await browser.text_content("#wait-message") == message
    await browser.fill("#approval-comment", NAME)
    await browser.click("#reject")
    await browser.wait_for_selector("#job-status [data-status='failed']")
    await wait_for_node(browser, "review", "failed")
    assert f"rejected by mallory: {NAME}" in await browser.text_content("#job-error")
    assert f"rejected by mallory: {NAME}" in await browser.text_content("#node-error-text")
    assert await browser.locator("img, script:not([src]), [onerror], [onmouseover]").count() == 0
    assert await browser.evaluate("() => window.__pwned") is None
    assert page.dialogs == []


async def test_a_failing_node_shows_its_error_on_the_graph_and_in_its_details(page, ui_service, model):
    browser = page.page
    headers = ui_service.headers("fay")
    workflow = await create_workflow(ui_service.base_url, headers, ask_once_workflow())
    await sign_in_as(browser, ui_service.base_url, "fay")
    await browser.goto(ui_url(ui_service.base_url, f"workflows/{workflow['id']}"))
    await browser.fill("#run-input", '{"question": "why?"}')
    model.inject(400, message="the model refused <b>this</b> prompt")
    await browser.click("#run")
    await wait_for_node(browser, "ask", "failed")
    await wait_for_node(browser, "end", "cancelled")
    await browser.wait_for_selector("#job-status [data-status='failed']")
    assert "the model refused <b>this</b> prompt" in await browser.text_content("#job-error")
    await browser.click("g.dag-node[data-node-id='ask']")
    error = await browser.text_content("#node-error-text")
    assert "the model refused <b>this</b> prompt" in error
    config = await browser.text_content("#node-config pre")
    assert '"prompt": "why?"' in config
    await browser.wait_for_selector("#node-log li.level-error:has-text('node ask: failed')")


async def test_another_users_workflow_and_job_show_not_found(page, ui_service):
    page.allow("status of 404")
    owner = ui_service.headers("olive")
    workflow = await create_workflow(ui_service.base_url, owner, hostile_workflow())
    job = await execute(ui_service.base_url, owner, workflow["id"], {"text": "x"})
    browser = page.page
    await sign_in_as(browser, ui_service.base_url, "intruder")
    for route in (f"jobs/{job['id']}", f"workflows/{workflow['id']}", "jobs/no-such-job"):
        await browser.goto(ui_url(ui_service.base_url, route))
        await browser.wait_for_selector(".not-found h1:text-is('Not found')")
        assert "not found" in await browser.text_content(".not-found p")
    assert await browser.locator(".workflows-table, g.dag-node").count() == 0
