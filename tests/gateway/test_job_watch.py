"""The job watcher feeds the job metrics from the store: a real SQLite file, read as the gateway does."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.models import WorkflowDefinition
from engine.records import JobChanges, JobRecord, JobStatus
from gateway.job_watch import JobWatcher
from gateway.metrics import ServiceMetrics
from storage.sqlite_store import SqliteStore

DEFINITION = WorkflowDefinition.model_validate({"name": "w", "nodes": [{"id": "start", "type": "start"}]})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "watch.db")
    await opened.start()
    yield opened
    await opened.close()


async def submitted(store: SqliteStore, workflow_id: str, job_id: str) -> JobRecord:
    return await store.create_job(
        JobRecord(id=job_id, owner="alice", workflow_id=workflow_id, workflow_version=1)
    )


async def test_started_and_finished_jobs_are_counted_once_each_poll_after_they_happen(store):
    workflow = await store.create_workflow("alice", DEFINITION)
    metrics = ServiceMetrics()
    watcher = JobWatcher(store, metrics, poll_s=3600)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    runs = await submitted(store, workflow.id, "runs")
    waits = await submitted(store, workflow.id, "waits")
    watcher.watch(runs)
    watcher.watch(waits)
    watcher.watch(runs)
    now = datetime.now(UTC)
    await store.checkpoint("runs", 0, JobChanges(status=JobStatus.RUNNING, started_at=now))
    await watcher.poll()
    assert value("workflow_jobs_started_total") == 1
    assert value("workflow_jobs_finished_total", status="completed") is None

    finished = JobChanges(status=JobStatus.COMPLETED, finished_at=now + timedelta(seconds=2))
    await store.checkpoint("runs", 1, finished)
    await store.checkpoint("waits", 0, JobChanges(status=JobStatus.CANCELLED, finished_at=now))
    await watcher.poll()
    await watcher.poll()
    assert value("workflow_jobs_started_total") == 1, "a start is counted once"
    assert value("workflow_jobs_finished_total", status="completed") == 1
    assert value("workflow_jobs_finished_total", status="cancelled") == 1, "cancelled while pending"
    assert (
        metrics.registry.get_sample_value("workflow_job_duration_seconds_sum", {"status": "completed"}) == 2
    )
    await watcher.close()


async def test_a_job_already_running_or_gone_is_not_followed(store):
    workflow = await store.create_workflow("alice", DEFINITION)
    metrics = ServiceMetrics()
    watcher = JobWatcher(store, metrics, poll_s=3600)
    pending = await submitted(store, workflow.id, "pending")
    watcher.watch(pending.model_copy(update={"status": JobStatus.RUNNING}))
    watcher.watch(pending.model_copy(update={"id": "never-stored"}))
    await store.checkpoint("pending", 0, JobChanges(status=JobStatus.COMPLETED, started_at=datetime.now(UTC)))
    await watcher.poll()
    assert metrics.registry.get_sample_value("workflow_jobs_finished_total", {"status": "completed"}) is None
    await watcher.close()


async def test_a_job_or_definition_the_store_cannot_read_stops_no_other_jobs_count(store):
    """A damaged row once failed every poll: no job of the gateway was counted again."""
    workflow = await store.create_workflow("alice", DEFINITION)
    metrics = ServiceMetrics()
    watcher = JobWatcher(store, metrics, poll_s=3600)
    readable = await submitted(store, workflow.id, "readable")
    damaged = await submitted(store, workflow.id, "damaged")
    watcher.watch(readable)
    watcher.watch(damaged)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE jobs SET input = '{\"cut' WHERE id = 'damaged'")
        conn.execute("UPDATE workflow_versions SET definition = '[]' WHERE workflow_id = ?", (workflow.id,))
    now = datetime.now(UTC)
    changes = JobChanges(status=JobStatus.COMPLETED, started_at=now, finished_at=now + timedelta(seconds=3))
    await store.checkpoint("readable", 0, changes)
    await watcher.poll()
    await watcher.poll()
    finished = metrics.registry.get_sample_value(
        "workflow_job_duration_seconds_count", {"status": "completed"}
    )
    assert finished == 1
    assert store.unreadable_rows() == 2, "the job and the definition version, each once"
    await watcher.close()
