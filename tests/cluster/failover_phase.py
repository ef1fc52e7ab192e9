"""A job whose node (machine) dies mid-job, on a three-node Ray cluster, run as a subprocess.

`python -m tests.cluster.failover_phase DATA_DIR LEDGER` starts `ray.cluster_utils.Cluster` with a
head without job slots, connects the service runtime to it, then adds two workers with two job slots
each, runs a chain of five 1.5 s nodes and, while the third runs, removes the worker node that hosts
the job's actor. It prints one JSON report: the job's end, the nodes completed before the removal,
where the actor ran before and after, and how long the job took to finish after the removal.

The workers join after the service started, as they would under an autoscaler: the job manager and the
executors (actors that reserve no resources, which Ray may place on any node) are then on the head.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ray.cluster_utils import Cluster

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import JobRecord, NodeStatus
from tests.actors.ray_test_nodes import PLUGINS
from tests.support import ray_test_api

NODES = ("n1", "n2", "n3", "n4", "n5")
NODE_SECONDS = 1.5
TIMEOUT_S = 90.0


async def actor_info(runtime: ServiceRuntime, job_id: str) -> dict[str, Any]:
    handle = ray_api.get_actor(f"job:{job_id}", runtime.runtime.namespace)
    assert handle is not None, "the job's actor is alive"
    info: dict[str, Any] = await ray_api.JobActorHandle(handle).info()
    return info


async def wait_job(runtime: ServiceRuntime, job_id: str, done: Any) -> JobRecord:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        job = await runtime.controller.get_job_status(job_id)
        if done(job) or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.05)


async def run(cluster: Cluster, data_dir: Path, ledger: Path) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        RAY_ADDRESS=cluster.address,
        DATA_DIR=str(data_dir),
        RAY_NAMESPACE=f"failover-{uuid.uuid4().hex[:8]}",
        MAX_ACTIVE_JOBS="2",
        WARM_POOL_SIZE="0",
        EXECUTOR_POOL_SIZE="1",
        NODE_PLUGINS=",".join(PLUGINS),
        LOG_LEVEL="ERROR",
    )
    runtime = await start_service_runtime(settings)
    try:
        workers = [cluster.add_node(num_cpus=1, resources={ray_api.JOB_SLOT: 2}) for _ in range(2)]
        cluster.wait_for_nodes()
        definition = WorkflowDefinition.model_validate(
            {
                "name": "failover-demo",
                "nodes": [
                    {"id": n, "type": "record_io", "config": {"path": str(ledger), "seconds": NODE_SECONDS}}
                    for n in NODES
                ],
                "edges": [{"source": s, "target": t} for s, t in itertools.pairwise(NODES)],
            }
        )
        workflow = await runtime.store.create_workflow("alice", definition)
        job = await runtime.controller.execute_workflow(workflow.id, {}, owner="alice")
        running = await wait_job(
            runtime, job.id, lambda j: "n3" in j.nodes and j.nodes["n3"].status is NodeStatus.RUNNING
        )
        before = await actor_info(runtime, job.id)
        victims = [node for node in workers if node.node_id == before["node_id"]]
        removed_at = time.monotonic()
        for node in victims:
            cluster.remove_node(node)
        after = await actor_info(runtime, job.id)
        restarted_s = time.monotonic() - removed_at
        done = await wait_job(runtime, job.id, lambda j: j.status.is_terminal)
        return {
            "status": done.status.value,
            "error": done.error.message if done.error else None,
            "completed_before": [n for n, c in running.nodes.items() if c.status is NodeStatus.COMPLETED],
            "actor_was_on_a_worker": len(victims) == 1,
            "actor_moved_node": after["node_id"] != before["node_id"],
            "actor_node_alive_after": after["node_id"] in {n["node_id"] for n in ray_test_api.alive_nodes()},
            "restarted_after_s": round(restarted_s, 1),
            "finished_after_removal_s": round(time.monotonic() - removed_at, 1),
            "attempts": {n: c.attempts for n, c in done.nodes.items()},
        }
    finally:
        await runtime.close()


def main(data_dir: Path, ledger: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        report = asyncio.run(run(cluster, data_dir, ledger))
    finally:
        ray_api.shutdown()
        cluster.shutdown()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
