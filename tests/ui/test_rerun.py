"""A job that ended is re-run from its page: the new job opens, keeps what the old one completed and names
the job it re-runs."""

from __future__ import annotations

import pytest

from tests.ui.support import (
    ask_once_workflow,
    create_workflow,
    sign_in_as,
    ui_url,
    wait_for_job,
    wait_for_node,
)

pytestmark = pytest.mark.timeout(90)


async def test_a_failed_job_is_rerun_from_its_page_and_keeps_what_completed(page, ui_service, model):
    browser = page.page
    headers = ui_service.headers("rita")
    workflow = await create_workflow(ui_service.base_url, headers, ask_once_workflow())
    await sign_in_as(browser, ui_service.base_url, "rita")
    await browser.goto(ui_url(ui_service.base_url, f"workflows/{workflow['id']}"))
    await browser.fill("#run-input", '{"question": "why?"}')
    model.inject(400, message="refused, once")
    await browser.click("#run")
    await browser.wait_for_selector("#job-status [data-status='failed']")
    failed_id = browser.url.rsplit("/", 1)[-1]
    assert await browser.locator("#action-cancel").count() == 0

    await browser.click("#action-rerun")
    await browser.wait_for_url(lambda url: "/jobs/" in url and not url.endswith(failed_id))
    rerun_id = browser.url.rsplit("/", 1)[-1]
    await browser.wait_for_selector("#job-status [data-status='completed']")
    await wait_for_node(browser, "ask", "completed")
    assert await browser.get_attribute("#job-rerun-of", "href") == f"#/jobs/{failed_id}"

    job = await wait_for_job(ui_service.base_url, headers, rerun_id)
    assert (job["status"], job["rerun_of"]) == ("completed", failed_id)
    assert job["nodes"]["start"]["kept_from"] == failed_id, "the start node was kept, not run again"
    assert job["nodes"]["ask"]["kept_from"] is None, "the failed node ran again"
