"""children-dedicated: the children workload in dedicated mode on Ray's fake multi-node cluster, whose
autoscaler adds "nodes" (extra raylets on this machine, each with 4 job slots) as job actors ask for slots.

The head offers no job slot, so every job actor, a child's or its parent's, runs on a worker the autoscaler
added. The cluster starts with no worker; a warm-up of 16 jobs makes it add them (the time that takes is
reported), then, on the same cluster, 100 jobs of the child workflow are started directly (16 in flight)
and a map of 100 child jobs (cap 16) runs, in that order. It reports both rates, their ratio, and where the
children's actors ran: how many workers, and none on the head.

The service runs in a subprocess connected to the cluster (`python -m bench.children_cluster ADDRESS`
prints its figures as JSON), since the bench process may hold a Ray instance of its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from bench.children import CHILD_JOB, CHILDREN, mapped_children, parent_job
from bench.fanout import llm_server
from bench.harness import create_workflow
from bench.jobs import submit_and_wait
from config.settings import Settings
from engine.records import JobRecord
from tests.cluster.fake_cluster import REPO, FakeAutoscalingCluster, cluster_env
from tests.support import ray_test_api

IN_FLIGHT = 16
WARM_POOL = 4
"""Job slots: 4 workers of 4 slots; the warm pool's actors hold 4 of them, the 12 others are admitted.
In dedicated mode a child's end resumes its parent on a new actor (or a warm one): the map pays that."""
WORKERS = 4
IDLE_TIMEOUT_MINUTES = 10.0
"""Long enough that the workers the warm-up added stay for both measured runs."""
PHASE_TIMEOUT_S = 900.0


def job_slot_workers() -> set[str]:
    return {node["node_id"] for node in ray_test_api.alive_nodes() if node["resources"].get("job_slot")}


def head_nodes() -> set[str]:
    return {node["node_id"] for node in ray_test_api.alive_nodes()} - job_slot_workers()


async def scale_up(runtime: ServiceRuntime, child_id: str) -> dict[str, Any]:
    """A warm-up burst on the cold cluster: how long until the autoscaler had added every worker."""
    started = time.perf_counter()
    warm_up = asyncio.ensure_future(submit_and_wait(runtime, child_id, 2 * IN_FLIGHT, IN_FLIGHT))
    peak, peak_s = 0, 0.0
    while not warm_up.done():
        count = len(job_slot_workers())
        if count > peak:
            peak, peak_s = count, time.perf_counter() - started
        await asyncio.sleep(0.25)
    await warm_up
    return {"workers_added": peak, "scale_up_s": round(peak_s, 1)}


def actor_nodes(jobs: list[JobRecord]) -> dict[str, str]:
    """The node each job's actor ran on (`job:<id>`, or the warm-pool actor that took it), from the GCS's
    actor table, which keeps ended actors."""
    names = {job.actor_name: job.id for job in jobs if job.actor_name is not None}
    return {
        names[actor["Name"]]: actor["Address"]["NodeID"]
        for actor in ray_test_api.actor_table()
        if actor.get("Name") in names
    }


async def phase(address: str) -> dict[str, Any]:
    with llm_server(latency_s=0.0) as url, tempfile.TemporaryDirectory(prefix="wf-bench-") as data_dir:
        values: dict[str, Any] = {
            "RAY_ADDRESS": address,
            "DATA_DIR": data_dir,
            "RAY_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "JOB_ACTOR_MODE": "dedicated",
            "WARM_POOL_SIZE": str(WARM_POOL),
            "MAX_ACTIVE_JOBS": str(WORKERS * 4 - WARM_POOL),
            "EXECUTOR_POOL_SIZE": "1",
            "MODEL_SERVICE_URL": url,
            "LLM_MAX_CONCURRENCY": "200",
            "LOG_LEVEL": "ERROR",
        }
        runtime = await start_service_runtime(Settings(_env_file=None, **values))
        try:
            child_id = await create_workflow(runtime, CHILD_JOB)
            parent_id = await create_workflow(runtime, parent_job(child_id, IN_FLIGHT))
            scaled = await scale_up(runtime, child_id)
            direct = await submit_and_wait(runtime, child_id, CHILDREN, IN_FLIGHT)
            mapped_s, parent = await mapped_children(runtime, parent_id)
            children = await runtime.store.list_jobs(parent_job_id=parent, limit=CHILDREN)
            placed = actor_nodes(children.items)
            head = head_nodes()
        finally:
            await runtime.close()
    workers = set(placed.values())
    mapped_per_s = CHILDREN / mapped_s
    return {
        "children": CHILDREN,
        **scaled,
        "map_wall_s": round(mapped_s, 2),
        "map_jobs_per_s": round(mapped_per_s, 2),
        "floor": direct["jobs_per_s"],
        "floor_what": f"the same {CHILDREN} jobs started directly on the same cluster, {IN_FLIGHT} in flight",
        "ratio_to_floor": round(mapped_per_s / direct["jobs_per_s"], 3),
        "children_located": len(placed),
        "children_workers": len(workers),
        "children_on_head": len(workers & head),
        "target": "measured only: children spread over the added workers",
        "target_met": len(workers) >= 2,
    }


async def run() -> dict[str, Any]:
    with FakeAutoscalingCluster(IDLE_TIMEOUT_MINUTES, max_workers=WORKERS) as cluster:
        finished = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bench.children_cluster", cluster.address],
            env=cluster_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=PHASE_TIMEOUT_S,
        )
    if finished.returncode != 0:
        raise RuntimeError(f"the cluster phase failed:\n{finished.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(phase(sys.argv[1]))), flush=True)
