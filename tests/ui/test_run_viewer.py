"""A workflow made and run from the page, watched live: a conditional, a map of 20 LLM calls and an
end node; nodes turn completed and skipped as the events arrive, the map's bar counts up to 20/20, the
digest's tokens appear as the model streams them, and the timeline and node details fill in."""

from __future__ import annotations

import json

import pytest

from tests.support.demo_workflow import documents, review_workflow
from tests.ui.support import RECORD_CHANGES, recorded_changes, sign_in_as, ui_url, wait_for_node

pytestmark = pytest.mark.timeout(120)

RECORD_TOKENS = """() => {
  window.__tokens = [];
  const box = document.getElementById("node-tokens");
  new MutationObserver(() => window.__tokens.push(box.textContent))
    .observe(box, {childList: true, characterData: true, subtree: true});
}"""


async def test_a_run_is_made_on_the_page_and_watched_live_to_its_end(page, ui_service, model):
    browser = page.page
    await sign_in_as(browser, ui_service.base_url, "walter")
    await browser.click("#new-workflow")
    await browser.fill("#definition", json.dumps(review_workflow()))
    await browser.click("#create-workflow")
    await browser.wait_for_selector("#workflow-name:text-is('Review documents')")
    assert await browser.locator("g.dag-node").count() == 6
    assert await browser.locator("g.dag-node[data-type='map'] rect.stack").count() == 2
    labels = await browser.locator("text.edge-label").all_text_contents()
    assert sorted(labels) == ["false", "true"]
    assert await browser.locator("#versions li").all_text_contents() != []

    await browser.fill("#run-input", '{"documents": [')
    await browser.wait_for_selector("#run-input-status:has-text('not valid JSON')")
    assert await browser.is_disabled("#run")
    await browser.fill("#run-input", "[1, 2]")
    await browser.wait_for_selector("#run-input-status:has-text('must be a JSON object')")
    assert await browser.is_disabled("#run")
    await browser.fill("#run-input", json.dumps(documents(20)))
    await browser.wait_for_selector("#run-input-status:has-text('valid JSON')")

    await browser.evaluate(RECORD_CHANGES)
    await browser.click("#run")
    await browser.wait_for_selector("g.dag-node[data-node-id='digest']")
    await browser.click("g.dag-node[data-node-id='digest']")
    await browser.wait_for_selector("#node-tokens", state="attached")
    await browser.evaluate(RECORD_TOKENS)
    await wait_for_node(browser, "end", "completed")
    await browser.wait_for_selector("#job-status [data-status='completed']")

    changes = await recorded_changes(browser)
    statuses = {
        node: [c["value"] for c in changes if c["node"] == node and c["attribute"] == "data-status"]
        for node in ("summarise", "quick", "end")
    }
    assert statuses["summarise"] == ["running", "completed"]
    assert statuses["quick"] == ["skipped"]
    assert statuses["end"][-1] == "completed"
    bars = [c["value"] for c in changes if c["node"] == "summarise" and c["attribute"] == "data-progress"]
    assert bars[-1] == "20/20"
    assert any(0 < int(bar.split("/")[0]) < 20 for bar in bars), f"the bar went {bars}: no count between"
    assert await browser.text_content("g.dag-node[data-node-id='summarise'] text.bar-text") == "20/20"

    streamed = [text for text in await browser.evaluate("() => window.__tokens") if text]
    final = "echo: Write a digest of 20 summaries"
    assert streamed[-1] == final
    assert any(0 < len(text) < len(final) for text in streamed), f"tokens arrived all at once: {streamed}"

    await browser.click("g.dag-node[data-node-id='summarise']")
    await browser.wait_for_selector("#node-items:text-is('20/20')")
    config = json.loads(await browser.text_content("#node-config pre"))
    assert config["items"][0] == "document 1: quarterly figures" and config["max_concurrency"] == 4
    output = json.loads(await browser.text_content("#node-output pre"))
    assert (output["succeeded"], output["total"]) == (20, 20)
    await browser.wait_for_selector("#node-log li:has-text('node summarise: completed')")
    rows = await browser.locator("#timeline .timeline-row").evaluate_all(
        "rows => rows.map(r => r.dataset.nodeId)"
    )
    assert set(rows) == {"start", "route", "summarise", "digest", "end"}
    assert (await browser.text_content("#job-duration")).endswith(" s")
    await browser.reload()
    await wait_for_node(browser, "quick", "skipped")
    for node_id in ("start", "route", "summarise", "digest", "end"):
        await wait_for_node(browser, node_id, "completed")
    bar = browser.locator("g.dag-node[data-node-id='summarise'] text.bar-text")
    assert await bar.text_content() == "20/20", "a reloaded finished job shows its map's items"
    await browser.goto(ui_url(ui_service.base_url, "jobs?status=completed"))
    await browser.wait_for_selector(".jobs-table [data-status='completed']")
