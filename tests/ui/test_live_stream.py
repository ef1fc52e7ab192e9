"""Following a job live: an event stream cut on the server's side resumes with Last-Event-ID and misses
nothing, and a job is cancelled from the page."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.support.demo_workflow import documents, review_workflow
from tests.ui.proxy import DroppingProxy
from tests.ui.support import create_workflow, job_events, sign_in_as, ui_url, wait_for_job, wait_for_node

pytestmark = pytest.mark.timeout(90)


async def _run_from_the_page(browser, base_url: str, workflow_id: str, count: int) -> str:
    await browser.goto(ui_url(base_url, f"workflows/{workflow_id}"))
    await browser.fill("#run-input", json.dumps(documents(count)))
    await browser.click("#run")
    await browser.wait_for_url("**/ui/#/jobs/*")
    return browser.url.rsplit("/", 1)[-1]


async def test_a_stream_cut_by_the_server_resumes_after_the_last_event_and_misses_nothing(
    page, ui_service, model
):
    page.allow("net::ERR_")  # the cut connection, as Chromium reports it
    model.latency_s = 0.6
    upstream = urlsplit(ui_service.base_url)
    proxy = await DroppingProxy(upstream.hostname, upstream.port).start()
    browser = page.page
    try:
        headers = ui_service.headers("rita")
        workflow = await create_workflow(ui_service.base_url, headers, review_workflow())
        await sign_in_as(browser, proxy.base_url, "rita")
        job_id = await _run_from_the_page(browser, proxy.base_url, workflow["id"], 20)
        await browser.wait_for_selector("g.dag-node[data-node-id='summarise'][data-progress]")
        before = await browser.locator("#events li").count()
        assert proxy.drop_event_streams() == 1
        await browser.wait_for_selector("#stream-state[data-state='reconnecting']")
        await wait_for_node(browser, "end", "completed")
        await browser.wait_for_selector("#stream-state[data-state='ended']")
        # The page reads the job again once it has ended: the proxy it talks through stays up until the
        # page has been checked.
        assert await browser.get_attribute("#stream-state", "data-connections") == "2"
        repeated = await browser.get_attribute("#event-count", "data-repeated")
        assert repeated == "0", "the resumed stream repeated events"
        shown = await browser.locator("#events li").evaluate_all(
            "rows => rows.map(r => [Number(r.dataset.sequence), r.dataset.id])"
        )
        events = await job_events(ui_service.base_url, headers, job_id)
        stored = [(event["sequence"], event["id"]) for event in events if event["sequence"]]
        assert [tuple(row) for row in shown] == stored
        assert [sequence for sequence, _ in stored] == list(range(1, len(stored) + 1))

        first, second = proxy.stream_requests
        assert first.last_event_id is None and second.last_event_id is not None
        resumed_after = next(sequence for sequence, event_id in stored if event_id == second.last_event_id)
        assert before <= resumed_after < len(stored), "it resumed after the last event seen before the cut"
        bar = browser.locator("g.dag-node[data-node-id='summarise'] text.bar-text")
        assert await bar.text_content() == "20/20"
    finally:
        await proxy.stop()


async def test_a_running_job_is_cancelled_from_the_page(page, ui_service, model):
    model.latency_s = 30
    browser = page.page
    headers = ui_service.headers("carl")
    workflow = await create_workflow(ui_service.base_url, headers, review_workflow())
    await sign_in_as(browser, ui_service.base_url, "carl")
    job_id = await _run_from_the_page(browser, ui_service.base_url, workflow["id"], 8)
    await wait_for_node(browser, "summarise", "running")
    await browser.click("#action-cancel")
    await browser.wait_for_selector("#job-status [data-status='cancelled']")
    for node_id in ("summarise", "digest", "end"):
        await wait_for_node(browser, node_id, "cancelled")
    await wait_for_node(browser, "quick", "skipped")
    assert await browser.locator("#action-cancel").count() == 0, "no cancel button on an ended job"
    job = await wait_for_job(ui_service.base_url, headers, job_id)
    assert job["status"] == "cancelled"
    assert job["nodes"]["summarise"]["status"] == "cancelled"
