"""The service on an autoscaling cluster, run as a subprocess (the test session has a Ray of its own).

`python -m tests.cluster.autoscale_phase ADDRESS DATA_DIR LEDGER JOBS` connects the service runtime to
the cluster at ADDRESS with admission following the cluster (MAX_ACTIVE_JOBS=0), submits JOBS jobs at once
(each one node that waits 2 s) and one job mapping MAP_ITEMS llm calls over a 0 ms test server, and
watches the cluster until every job ended and the workers the autoscaler added are gone again. It prints
one JSON report: job statuses, worker counts, the admission cap over time, where the job actors and the
executors ran, and timings.
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
from tests.support.openai_server import OpenAITestServer

NODE_SECONDS = 2.0
MAP_ITEMS = 10_000
MAP_IN_FLIGHT = 200
EXECUTOR_IDLE_S = 3.0
JOBS_TIMEOUT_S = 120.0
SCALE_DOWN_TIMEOUT_S = 60.0
POLL_S = 0.25


def map_definition() -> WorkflowDefinition:
    child = {"type": "llm", "config": {"model": "test", "prompt": "item {{index}}"}}
    fan = {
        "id": "fan",
        "type": "map",
        "config": {"items": "{{input.items}}", "node": child, "max_concurrency": MAP_IN_FLIGHT},
    }
    return WorkflowDefinition.model_validate({"name": "autoscale-map", "nodes": [fan], "edges": []})


def executor_nodes(namespace: str) -> set[str]:
    """The nodes the namespace's executors run on now."""
    names = set(ray_api.named_actors(namespace, "node-executor-"))
    return {
        str(actor["Address"]["NodeID"])
        for actor in ray_test_api.actor_table()
        if actor.get("Name") in names and actor.get("State") == "ALIVE"
    }


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
    with OpenAITestServer(latency_s=0.0, max_in_flight=MAP_IN_FLIGHT, record_requests=False) as llm:
        namespace = f"autoscale-{uuid.uuid4().hex[:8]}"
        settings = Settings(
            _env_file=None,
            RAY_ADDRESS=address,
            DATA_DIR=str(data_dir),
            RAY_NAMESPACE=namespace,
            MAX_ACTIVE_JOBS="0",
            WARM_POOL_SIZE="0",
            EXECUTOR_POOL_SIZE="1",
            EXECUTOR_IDLE_S=str(EXECUTOR_IDLE_S),
            MODEL_SERVICE_URL=llm.url,
            LLM_MAX_CONCURRENCY=str(MAP_IN_FLIGHT),
            NODE_PLUGINS=",".join(PLUGINS),
            LOG_LEVEL="ERROR",
        )
        runtime = await start_service_runtime(settings)
        try:
            return await watch(runtime, namespace, ledger, jobs)
        finally:
            await runtime.close()


async def watch(runtime: ServiceRuntime, namespace: str, ledger: Path, jobs: int) -> dict[str, Any]:
    nodes = ray_test_api.alive_nodes()
    head = {node["node_id"] for node in nodes} - {node["node_id"] for node in workers()}
    definition = WorkflowDefinition.model_validate(
        {
            "name": "autoscale-demo",
            "nodes": [
                {"id": "wait", "type": "record_io", "config": {"path": str(ledger), "seconds": NODE_SECONDS}}
            ],
            "edges": [],
        }
    )
    workflow = await runtime.store.create_workflow("alice", definition)
    mapping = await runtime.store.create_workflow("alice", map_definition())
    limits = [(await runtime.controller.stats())["max_active_jobs"]]
    report: dict[str, Any] = {"workers_at_start": len(workers())}
    submitted = time.monotonic()
    job_ids = [
        (await runtime.controller.execute_workflow(workflow.id, {}, owner="alice")).id for _ in range(jobs)
    ]
    items = [f"document {index}" for index in range(MAP_ITEMS)]
    map_job = (await runtime.controller.execute_workflow(mapping.id, {"items": items}, owner="alice")).id
    peak, peak_at, nodes_of_jobs, nodes_of_executors = 0, 0.0, {}, set()
    while True:
        statuses = [(await runtime.controller.get_job_status(job_id)).status for job_id in job_ids]
        map_status = (await runtime.controller.get_job_status(map_job)).status
        count = len(workers())
        if count > peak:
            peak, peak_at = count, time.monotonic() - submitted
        limit = (await runtime.controller.stats())["max_active_jobs"]
        if limit != limits[-1]:
            limits.append(limit)
        nodes_of_executors |= executor_nodes(namespace)
        for job_id, status in zip(job_ids, statuses, strict=True):
            if status is JobStatus.RUNNING and job_id not in nodes_of_jobs:
                node = await actor_node(runtime, job_id)
                if node is not None:
                    nodes_of_jobs[job_id] = node
        if all(status.is_terminal for status in [*statuses, map_status]):
            break
        if time.monotonic() - submitted > JOBS_TIMEOUT_S:
            break
        await asyncio.sleep(POLL_S)
    done_at = time.monotonic()
    mapped = await runtime.controller.get_job_status(map_job)
    while workers() and time.monotonic() - done_at < SCALE_DOWN_TIMEOUT_S:
        await asyncio.sleep(POLL_S)
    report.update(
        statuses=[status.value for status in statuses],
        map_status=mapped.status.value,
        map_succeeded=(mapped.nodes["fan"].output or {}).get("succeeded") if "fan" in mapped.nodes else None,
        limits=limits,
        executor_nodes=len(nodes_of_executors),
        executors_on_workers=len(nodes_of_executors - head),
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


if __name__ == "__main__":
    address, data, ledger_path, count = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(run(address, data, ledger_path, count))), flush=True)
