"""The job manager's recovery at start-up on a real local Ray and a real SQLite file: a job row it cannot
read is skipped (and counted), and the jobs around it are resumed.

The unreadable row is one the service itself once wrote: a running job whose start node's output (its
input) nests 220 levels deep, which pydantic-core's serializer stored and its parser (200 levels) never
read back; the manager then failed to start at all, so no job of the service ran again."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from actors import ray_api
from actors.bootstrap import start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import JobRecord, JobStatus
from storage.sqlite_store import SqliteStore
from storage.store_factory import SQLITE_FILE_NAME

pytestmark = pytest.mark.slow


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


async def left_by_an_earlier_run(data_dir: Path) -> None:
    """Three unfinished jobs, the middle one running and unreadable."""
    store = SqliteStore(data_dir / SQLITE_FILE_NAME)
    await store.start()
    try:
        definition = WorkflowDefinition.model_validate({"name": "w", "nodes": [{"id": "s", "type": "start"}]})
        workflow = await store.create_workflow("alice", definition)
        for job_id in ("first", "damaged", "last"):
            await store.create_job(
                JobRecord(
                    id=job_id, owner="alice", workflow_id=workflow.id, workflow_version=1, input={"n": 1}
                )
            )
    finally:
        await store.close()
    checkpoint = {"node_id": "s", "node_type": "start", "status": "completed", "output": nested(220)}
    with sqlite3.connect(data_dir / SQLITE_FILE_NAME) as conn:
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = 'damaged'")
        conn.execute(
            "INSERT INTO job_nodes (job_id, node_id, node_type, status, checkpoint) "
            "VALUES ('damaged', 's', 'start', 'completed', ?)",
            (json.dumps(checkpoint),),
        )


@pytest.mark.timeout(120)
async def test_recovery_skips_a_job_it_cannot_read_and_resumes_the_others(ray_cluster, tmp_path):
    data_dir = tmp_path / "data"
    await left_by_an_earlier_run(data_dir)
    settings = Settings(
        _env_file=None,
        DATA_DIR=str(data_dir),
        RAY_NAMESPACE=f"wf-recovery-{uuid.uuid4().hex[:8]}",
        RAY_DASHBOARD="false",
        MAX_ACTIVE_JOBS="2",
        WARM_POOL_SIZE="0",
        EXECUTOR_POOL_SIZE="1",
        LOG_LEVEL="WARNING",
    )
    runtime = await start_service_runtime(settings)
    try:
        for job_id in ("first", "last"):
            async with asyncio.timeout(60):
                while not (await runtime.store.get_job(job_id)).status.is_terminal:
                    await asyncio.sleep(0.05)
            assert (await runtime.store.get_job(job_id)).status is JobStatus.COMPLETED
        assert (await runtime.controller.stats())["unreadable_rows"] == 1
    finally:
        for name in ray_api.named_actors(runtime.runtime.namespace):
            handle = ray_api.get_actor(name, runtime.runtime.namespace)
            if handle is not None:
                ray_api.kill(handle)
        await runtime.close()
