"""The service on an autoscaling cluster, run as a subprocess (the test session has a Ray of its own).

`python -m tests.cluster.autoscale_phase ADDRESS DATA_DIR LEDGER JOBS` connects the service runtime to
the cluster at ADDRESS, submits JOBS jobs at once (each one node that waits 2 s) and watches the
cluster until every job ended and the workers the autoscaler added are gone again. It prints one JSON
report: job statuses, worker counts, where the job actors ran, and timings.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import JobStatus
from tests.actors.ray_test_nodes import PLUGINS
from tests.support import ray_test_api

NODE_SECONDS = 2.0
JOBS_TIMEOUT_S = 120.0
SCALE_DOWN_TIMEOUT_S = 60.0
POLL_S = 0.25


def workers() -> list[dict[str, Any]]:
    return [node for node in ray_test_api.alive_nodes() if node["resources"].get(ray_api.JOB_SLOT)]


async def actor_node(runtime: ServiceRuntime, job_id: str) -> str | None:
    """The node a running job's actor is on, asked of the actor; None once it has ended."""
    handle = ray_api.get_actor(f"job:{job_id}", runtime.runtime.namespace)
    if handle is None:
        return None
    try:
        info = await ray_api.JobActorHandle(handle).info(retry_on_restart=False)
    except ray_api.ActorDiedError:
        return None
    return str(info["node_id"])


async def run(address: str, data_dir: Path, ledger: Path, jobs: int) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        RAY_ADDRESS=address,
        DATA_DIR=str(data_dir),
        RAY_NAMESPACE=f"autoscale-{uuid.uuid4().hex[:8]}",
        MAX_ACTIVE_JOBS=str(jobs),
        WARM_POOL_SIZE="0",
        EXECUTOR_POOL_SIZE="1",
        NODE_PLUGINS=",".join(PLUGINS),
        LOG_LEVEL="ERROR",
    )
    runtime = await start_service_runtime(settings)
    try:
        nodes = ray_test_api.alive_nodes()
        head = {node["node_id"] for node in nodes} - {node["node_id"] for node in workers()}
        definition = WorkflowDefinition.model_validate(
            {
                "name": "autoscale-demo",
                "nodes": [
                    {
                        "id": "wait",
                        "type": "record_io",
                        "config": {"path": str(ledger), "seconds": NODE_SECONDS},
                    }
                ],
                "edges": [],
            }
        )
        workflow = await runtime.store.create_workflow("alice", definition)
        report: dict[str, Any] = {"workers_at_start": len(workers())}
        submitted = time.monotonic()
        job_ids = [
            (await runtime.controller.execute_workflow(workflow.id, {}, owner="alice")).id
            for _ in range(jobs)
        ]
        peak, peak_at, nodes_of_jobs = 0, 0.0, {}
        while True:
            statuses = [(await runtime.controller.get_job_status(job_id)).status for job_id in job_ids]
            count = len(workers())
            if count > peak:
                peak, peak_at = count, time.monotonic() - submitted
            for job_id, status in zip(job_ids, statuses, strict=True):
                if status is JobStatus.RUNNING and job_id not in nodes_of_jobs:
                    node = await actor_node(runtime, job_id)
                    if node is not None:
                        nodes_of_jobs[job_id] = node
            if all(status.is_terminal for status in statuses):
                break
            if time.monotonic() - submitted > JOBS_TIMEOUT_S:
                break
            await asyncio.sleep(POLL_S)
        done_at = time.monotonic()
        while workers() and time.monotonic() - done_at < SCALE_DOWN_TIMEOUT_S:
            await asyncio.sleep(POLL_S)
        report.update(
            statuses=[status.value for status in statuses],
            peak_workers=peak,
            scale_up_s=round(peak_at, 1),
            jobs_done_s=round(done_at - submitted, 1),
            workers_at_end=len(workers()),
            scale_down_s=round(time.monotonic() - done_at, 1),
            jobs_located=len(nodes_of_jobs),
            actor_nodes=len(set(nodes_of_jobs.values())),
            actors_on_head=len(set(nodes_of_jobs.values()) & head),
        )
        return report
    finally:
        await runtime.close()


if __name__ == "__main__":
    address, data, ledger_path, count = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(run(address, data, ledger_path, count))), flush=True)
