"""A job the manager ends outside its actor (the actor died) publishes the events its last checkpoint
held but never sent, before its own last event: real SQLite store, real Redis, no Ray (the manager's
methods here make no Ray call; its process logging setup is replaced, named so, to leave pytest's alone)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from actors.ray_runtime.manager import JobManager
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.models import WorkflowDefinition
from engine.records import EventType, JobChanges, JobEvent, JobRecord, JobStatus
from storage.embedded_redis import EmbeddedRedis
from storage.redis_bus import RedisStreamBus
from storage.sqlite_store import SqliteStore
from tests.support.runtime_config import runtime_config


@pytest.fixture
def redis_server(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def test_failing_a_job_whose_actor_died_publishes_its_outbox_then_job_failed_without_logging_setup(
    tmp_path: Path, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(RuntimeConfig, "configure_process_logging", lambda self: None)
    store = SqliteStore(tmp_path / "workflow.db")
    await store.start()
    bus = RedisStreamBus(redis_server.host, redis_server.port)
    await bus.start()
    try:
        definition = WorkflowDefinition.model_validate(
            {"name": "w", "nodes": [{"id": "a", "type": "transform"}], "edges": []}
        )
        workflow = await store.create_workflow("alice", definition)
        job = await store.create_job(
            JobRecord(
                id=f"job-{uuid.uuid4().hex}",
                owner="alice",
                workflow_id=workflow.id,
                workflow_version=workflow.version,
                input={},
            )
        )
        unsent = [
            JobEvent(sequence=1, type=EventType.JOB_STARTED, job_id=job.id, workflow_id=workflow.id),
            JobEvent(
                sequence=2, type=EventType.NODE_STARTED, job_id=job.id, workflow_id=workflow.id, node_id="a"
            ),
        ]
        await bus.publish(unsent[0])  # the actor published the first event of its commit, then died
        changes = JobChanges(status=JobStatus.RUNNING, event_sequence=2, pending_events=unsent)
        await store.checkpoint(job.id, job.version, changes, [])

        manager = JobManager(runtime_config(tmp_path, redis_server.host, redis_server.port), store, bus)
        await manager._fail_unrunnable(job.id, "its job actor died: test")

        seen = [(event.sequence, event.type) async for event in bus.subscribe(job.id)]
        assert seen == [(1, EventType.JOB_STARTED), (2, EventType.NODE_STARTED), (3, EventType.JOB_FAILED)]
        assert (await store.get_job(job.id)).status is JobStatus.FAILED
    finally:
        await bus.close()
        await store.close()
