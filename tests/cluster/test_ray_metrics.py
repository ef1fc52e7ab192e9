"""The engine's own metrics reach Ray's metrics agent: after a completed and a failed job, every node's
Prometheus endpoint (what the dashboard's Metrics view and a Prometheus server read) carries the job
run counters and the run-time histogram, by status."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import start_service_runtime
from engine.models import WorkflowDefinition
from engine.records import JobStatus
from tests.support import ray_test_api
from tests.support.ray_jobs import finished, record, settings_for, wait_for

pytestmark = pytest.mark.slow

EXPORT_WAIT_S = 45.0


def metric_total(text: str, name: str, status: str | None = None) -> float:
    """The sum of a metric's samples (all workers), optionally only those with `status`."""
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$", text, re.MULTILINE):
        if status is None or f'status="{status}"' in match.group(1):
            total += float(match.group(2))
    return total


async def scrape_all_nodes() -> str:
    nodes = ray_test_api.alive_nodes()
    ports = [node["metrics_export_port"] for node in nodes if node["metrics_export_port"]]
    async with httpx.AsyncClient(timeout=5) as client:
        pages = [await client.get(f"http://127.0.0.1:{port}/metrics") for port in ports]
    return "\n".join(page.text for page in pages if page.status_code == 200)


@pytest.mark.timeout(120)
async def test_job_runs_are_counted_and_timed_by_status(ray_cluster, tmp_path):
    runtime = await start_service_runtime(
        settings_for(tmp_path / "data", RAY_NAMESPACE=f"metrics-{uuid.uuid4().hex[:8]}")
    )
    try:
        ledger = tmp_path / "ledger"
        ok = WorkflowDefinition.model_validate(
            {"name": "metrics-ok", "nodes": [record("a", ledger, seconds=0.3)]}
        )
        bad = WorkflowDefinition.model_validate(
            {"name": "metrics-bad", "nodes": [record("b", ledger, fail_times=5)]}
        )
        jobs = []
        for definition in (ok, bad):
            workflow = await runtime.store.create_workflow("alice", definition)
            jobs.append(await runtime.controller.execute_workflow(workflow.id, {}, owner="alice"))
        ended = [await wait_for(runtime, job.id, finished) for job in jobs]
        assert [job.status for job in ended] == [JobStatus.COMPLETED, JobStatus.FAILED]
    finally:
        for name in ray_api.named_actors(runtime.runtime.namespace):
            handle = ray_api.get_actor(name, runtime.runtime.namespace)
            if handle is not None:
                ray_api.kill(handle)
        await runtime.close()

    deadline = asyncio.get_running_loop().time() + EXPORT_WAIT_S
    while True:
        text = await scrape_all_nodes()
        completed = metric_total(text, "ray_workflow_job_runs_finished_total", "completed")
        failed = metric_total(text, "ray_workflow_job_runs_finished_total", "failed")
        if (completed >= 1 and failed >= 1) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(1)
    assert completed >= 1 and failed >= 1, "job run counters by status were exported"
    assert metric_total(text, "ray_workflow_job_runs_total") >= 2
    assert metric_total(text, "ray_workflow_job_run_seconds_count", "completed") >= 1
    assert metric_total(text, "ray_workflow_job_run_seconds_sum", "completed") >= 0.3
