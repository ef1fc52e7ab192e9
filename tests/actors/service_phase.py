"""One life of the whole service (its own local Ray) for the full-restart tests, run as a subprocess.

`python -m tests.actors.service_phase start DATA_DIR LEDGER` starts a job and stops everything
(gateway runtime and Ray) while the job runs; `... resume DATA_DIR LEDGER` starts again and prints
the job's final status once recovery has finished it.

`... start-timer DATA_DIR SECONDS` starts a job whose wait node sleeps that long, and stops everything once
the job is suspended; `... resume-timer DATA_DIR JOB_ID` waits out the timer first (so it is due while
nothing runs), starts again and prints the job's status, when the node woke, its deadline, and how many
times the node completed."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import EventType, JobRecord, NodeStatus, utcnow
from storage.sqlite_store import SqliteStore
from storage.store_factory import SQLITE_FILE_NAME
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
        job = await ended(runtime, job_id)
        print(job.status.value, flush=True)
    finally:
        await runtime.close()


async def start_timer(data_dir: Path, seconds: float) -> None:
    runtime = await start_service_runtime(settings(data_dir))
    try:
        definition = WorkflowDefinition.model_validate(
            {"name": "timer", "nodes": [{"id": "nap", "type": "wait", "config": {"delay_s": seconds}}]}
        )
        workflow = await runtime.store.create_workflow("alice", definition)
        job = await runtime.controller.execute_workflow(workflow.id, {}, owner="alice")
        while not (await runtime.store.get_job(job.id)).waiting_on:
            await asyncio.sleep(0.05)
        print(job.id, flush=True)
    finally:
        await runtime.close()


async def resume_timer(data_dir: Path, job_id: str) -> None:
    """Wait until the timer is due with nothing running, then start the service again."""
    store = await open_store(data_dir)
    wait = (await store.get_job(job_id)).nodes["nap"].wait
    await store.close()
    assert wait is not None and wait.deadline is not None
    await asyncio.sleep(max(0.0, (wait.deadline - utcnow()).total_seconds()) + 0.5)
    runtime = await start_service_runtime(settings(data_dir))
    try:
        job = await ended(runtime, job_id)
        events = [e async for e in runtime.bus.subscribe(job_id)]
        completions = sum(1 for e in events if e.type == EventType.NODE_COMPLETED and e.node_id == "nap")
        print(job.status.value, job.nodes["nap"].output, wait.deadline.isoformat(), completions, flush=True)
    finally:
        await runtime.close()


async def ended(runtime: ServiceRuntime, job_id: str) -> JobRecord:
    """The job once it ended, or as it stands after a minute."""
    for _ in range(1200):
        job = await runtime.store.get_job(job_id)
        if job.status.is_terminal:
            break
        await asyncio.sleep(0.05)
    return job


async def open_store(data_dir: Path) -> SqliteStore:
    store = SqliteStore(data_dir / SQLITE_FILE_NAME)
    await store.start()
    return store


PHASES = {
    "start": lambda data, arg: start(data, Path(arg)),
    "resume": resume,
    "start-timer": lambda data, arg: start_timer(data, float(arg)),
    "resume-timer": resume_timer,
}

if __name__ == "__main__":
    phase, data, third = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    asyncio.run(PHASES[phase](data, third))
