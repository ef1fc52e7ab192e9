"""Steps the browser tests share: signing in through the page, recording how the DAG changes live,
waiting for a job through the API, reading a job's events the way any client does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from playwright.async_api import Page

from tests.gateway.support import read_sse

TERMINAL = frozenset({"completed", "failed", "cancelled"})

RECORD_CHANGES = """() => {
  window.__changes = [];
  const started = performance.now();
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      const node = mutation.target;
      if (mutation.type === "attributes" && node.dataset && node.dataset.nodeId) {
        window.__changes.push({
          node: node.dataset.nodeId,
          attribute: mutation.attributeName,
          value: node.getAttribute(mutation.attributeName),
          at: performance.now() - started,
        });
      }
    }
  }).observe(document.body, {
    subtree: true, attributes: true, attributeFilter: ["data-status", "data-progress"],
  });
}"""
"""Installed on the document before a run starts: it outlives the page's view changes (the fragment
changes, the document stays), so every state a node shows is kept in order."""


def ui_url(base_url: str, route: str = "") -> str:
    return f"{base_url}/ui/#/{route}"


async def sign_in_as(page: Page, base_url: str, name: str) -> None:
    """Through the page's development sign-in."""
    await page.goto(ui_url(base_url, "signin"))
    await page.fill("#dev-name", name)
    await page.click("#dev-submit")
    await page.wait_for_selector(f"#signed-in-as:text-is('{name}')")


async def recorded_changes(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("() => window.__changes")


async def node_status(page: Page, node_id: str) -> str | None:
    return await page.get_attribute(f"g.dag-node[data-node-id='{node_id}']", "data-status")


async def wait_for_node(page: Page, node_id: str, status: str) -> None:
    await page.wait_for_selector(f"g.dag-node[data-node-id='{node_id}'][data-status='{status}']")


async def wait_for_job(base_url: str, headers: dict[str, str], job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        while True:
            job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
            if job["status"] in TERMINAL:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
            await asyncio.sleep(0.1)


async def job_events(base_url: str, headers: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    """Every event of a finished job, as its SSE stream replays them."""
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http,
        http.stream("GET", f"/api/v1/jobs/{job_id}/events") as response,
    ):
        return [event.data for event in await read_sse(response.aiter_lines())]


async def create_workflow(base_url: str, headers: dict[str, str], definition: dict[str, Any]) -> dict:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        response = await http.post("/api/v1/workflows", json=definition)
        assert response.status_code == 201, response.text
        return response.json()


async def execute(base_url: str, headers: dict[str, str], workflow_id: str, data: dict[str, Any]) -> dict:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        response = await http.post(f"/api/v1/workflows/{workflow_id}/execute", json=data)
        assert response.status_code == 202, response.text
        return response.json()


def ask_once_workflow() -> dict:
    """start -> one LLM call of the input's question -> end."""
    return {
        "name": "Ask once",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "ask", "type": "llm", "config": {"model": "test-model", "prompt": "{{input.question}}"}},
            {"id": "end", "type": "end"},
        ],
        "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "end"}],
    }
