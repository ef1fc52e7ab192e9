"""One life of the whole service (its own local Ray) for the full-restart test, run as a subprocess.

`python -m tests.actors.service_phase start DATA_DIR LEDGER` starts a job whose timer is pending and a job
that runs, and stops everything (gateway runtime and Ray) while the second runs; `... resume DATA_DIR
JOB_ID,TIMER_JOB_ID` waits out the timer (so it is due while nothing runs), starts again and prints what
recovery made of both jobs."""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from pathlib import Path

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import EventType, JobRecord, NodeStatus, SignalRecord, utcnow
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


TIMER_S = 2.0


async def start(data_dir: Path, ledger: Path) -> None:
    """Start a job whose wait node sleeps TIMER_S and one that waits for an approval (both suspended at
    once), then a chain job; store the approval's decision without telling the job manager (as if it died
    before it heard of it), and stop everything while the chain's second node runs; print the job ids."""
    runtime = await start_service_runtime(settings(data_dir))
    try:
        timer = WorkflowDefinition.model_validate(
            {"name": "timer", "nodes": [{"id": "nap", "type": "wait", "config": {"delay_s": TIMER_S}}]}
        )
        chain = WorkflowDefinition.model_validate(
            {
                "name": "restart-demo",
                "nodes": [
                    {"id": n, "type": "record_io", "config": {"path": str(ledger), "seconds": 0.8}}
                    for n in NODES
                ],
                "edges": [{"source": s, "target": t} for s, t in itertools.pairwise(NODES)],
            }
        )
        approval = WorkflowDefinition.model_validate(
            {
                "name": "approval",
                "nodes": [{"id": "review", "type": "approval", "config": {"message": "ok?"}}],
            }
        )
        waiting = [
            await runtime.controller.execute_workflow(
                (await runtime.store.create_workflow("alice", definition)).id, {}, owner="alice"
            )
            for definition in (timer, approval)
        ]
        for waiter in waiting:
            while not (await runtime.store.get_job(waiter.id)).waiting_on:
                await asyncio.sleep(0.05)
        job = await runtime.controller.execute_workflow(
            (await runtime.store.create_workflow("alice", chain)).id, {}, owner="alice"
        )
        while True:
            current = await runtime.store.get_job(job.id)
            if current.nodes.get("b") and current.nodes["b"].status is NodeStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        decision = {"approved": True}
        await runtime.store.put_signal(
            SignalRecord(
                id=uuid.uuid4().hex, job_id=waiting[1].id, name="review", payload=decision, sender="alice"
            )
        )
        print(job.id, *(waiter.id for waiter in waiting), flush=True)
    finally:
        await runtime.close()


async def resume(data_dir: Path, job_ids: str) -> None:
    """Wait until the timer is due with nothing running, start again, and print the chain job's status,
    the timer job's, the approval job's, when the timer's node woke, its deadline, and how many times the
    timer's node completed."""
    job_id, timer_id, approval_id = job_ids.split(",")
    store = await open_store(data_dir)
    wait = (await store.get_job(timer_id)).nodes["nap"].wait
    await store.close()
    assert wait is not None and wait.deadline is not None
    await asyncio.sleep(max(0.0, (wait.deadline - utcnow()).total_seconds()) + 0.5)
    runtime = await start_service_runtime(settings(data_dir))
    try:
        job, timed, approved = [await ended(runtime, i) for i in (job_id, timer_id, approval_id)]
        events = [e async for e in runtime.bus.subscribe(timer_id)]
        completions = sum(1 for e in events if e.type == EventType.NODE_COMPLETED and e.node_id == "nap")
        statuses = (job.status.value, timed.status.value, approved.status.value)
        print(*statuses, timed.nodes["nap"].output, wait.deadline.isoformat(), completions, flush=True)
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


if __name__ == "__main__":
    phase, data, third = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    asyncio.run(start(data, Path(third)) if phase == "start" else resume(data, third))
