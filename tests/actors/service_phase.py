"""One life of the whole service (its own local Ray) for the full-restart test, run as a subprocess.

`python -m tests.actors.service_phase start DATA_DIR LEDGER` starts a job and stops everything
(gateway runtime and Ray) while the job runs; `... resume DATA_DIR LEDGER` starts again and prints
the job's final status once recovery has finished it."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from actors.ray_runtime.bootstrap import start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import NodeStatus
from tests.actors.ray_test_nodes import PLUGINS

NODES = ("a", "b", "c", "d")


def settings(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        DATA_DIR=str(data_dir),
        RAY_DASHBOARD="false",
        MAX_ACTIVE_JOBS="2",
        WARM_POOL_SIZE="0",
        EXECUTOR_POOL_SIZE="1",
        NODE_PLUGINS=",".join(PLUGINS),
        LOG_LEVEL="WARNING",
    )


async def start(data_dir: Path, ledger: Path) -> None:
    runtime = await start_service_runtime(settings(data_dir))
    try:
        definition = WorkflowDefinition.model_validate(
            {
                "name": "restart-demo",
                "nodes": [
                    {"id": n, "type": "record_io", "config": {"path": str(ledger), "seconds": 0.8}}
                    for n in NODES
                ],
                "edges": [{"source": s, "target": t} for s, t in itertools.pairwise(NODES)],
            }
        )
        workflow = await runtime.store.create_workflow("alice", definition)
        job = await runtime.controller.execute_workflow(workflow.id, {}, owner="alice")
        while True:
            current = await runtime.store.get_job(job.id)
            if current.nodes.get("b") and current.nodes["b"].status is NodeStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        print(job.id, flush=True)
    finally:
        await runtime.close()


async def resume(data_dir: Path, job_id: str) -> None:
    runtime = await start_service_runtime(settings(data_dir))
    try:
        for _ in range(1200):
            job = await runtime.store.get_job(job_id)
            if job.status.is_terminal:
                break
            await asyncio.sleep(0.05)
        print(job.status.value, flush=True)
    finally:
        await runtime.close()


if __name__ == "__main__":
    phase, data, third = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    asyncio.run(start(data, Path(third)) if phase == "start" else resume(data, third))
