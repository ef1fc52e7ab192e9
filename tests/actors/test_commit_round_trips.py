"""Each commit of the job runner, and each job the manager ends outside an actor, costs one store call
(its checkpoint, log lines included) and one bus call (all its events): the real SQLite store and Redis
bus, counted by thin wrappers that pass every call on. No Ray: the manager's methods here make no Ray
call; its process logging setup is replaced, named so, to leave pytest's alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actors.job_loop.job_runner import JobRunner, RunnerServices
from actors.ray_runtime.manager import JobManager
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.records import (
    EventType,
    JobChanges,
    JobEvent,
    JobStatus,
    LogEntry,
    NodeCheckpoint,
)
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, Store
from tests.support.runner_jobs import definition, events_of, start_job
from tests.support.runtime_config import runtime_config


class CountingStore:
    """The real store; counts the calls that write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    async def checkpoint(
        self,
        job_id: str,
        expected_version: int,
        changes: JobChanges,
        nodes: Sequence[NodeCheckpoint] = (),
        logs: Sequence[LogEntry] = (),
    ) -> int:
        self.calls["checkpoint"] += 1
        return await self.store.checkpoint(job_id, expected_version, changes, nodes, logs)

    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        self.calls["append_logs"] += 1
        await self.store.append_logs(entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class CountingBus:
    """The real bus; counts the calls that publish and the events they carry."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.calls: Counter[str] = Counter()
        self.batches: list[list[int]] = []

    async def publish(self, event: JobEvent) -> str | None:
        self.calls["publish"] += 1
        return await self.bus.publish(event)

    async def publish_many(self, events: Sequence[JobEvent]) -> list[str | None]:
        self.calls["publish_many"] += 1
        self.batches.append([event.sequence for event in events])
        return await self.bus.publish_many(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


async def test_every_commit_is_one_checkpoint_with_its_log_lines_and_one_publish(services: RunnerServices):
    wf = definition(
        [
            {"id": "start", "type": "start"},
            {"id": "shape", "type": "transform", "config": {"template": {"q": "question {{input.n}}"}}},
            {"id": "end", "type": "end"},
        ],
        [("start", "shape"), ("shape", "end")],
    )
    created = await start_job(services, wf, {"n": 1})
    store, bus = CountingStore(services.store), CountingBus(services.bus)
    runner = JobRunner(replace(services, store=store, bus=bus), created.job, created.dag)
    assert await runner.run() is JobStatus.COMPLETED

    job = await services.store.get_job(created.job.id)
    commits = job.version - created.job.version
    assert commits >= 3 and store.calls == Counter(checkpoint=commits), "no separate log write"
    assert bus.calls["publish"] == 0, "no publish per event"
    batches = [batch for batch in bus.batches if batch]
    assert len(batches) == commits, "one publish_many per commit"
    assert [sequence for batch in batches for sequence in batch] == list(range(1, job.event_sequence + 1))
    events = await events_of(services, job.id)
    assert [e.sequence for e in events] == list(range(1, job.event_sequence + 1))
    logs = (await services.store.list_logs(job.id, limit=1000)).items
    assert len(logs) == len(events), "one log line per event, stored with its checkpoint"
    assert (logs[0].message, logs[-1].message) == ("job: started", "job: completed")


async def test_cancelling_a_pending_job_is_one_checkpoint_and_one_publish_without_logging_setup(
    services: RunnerServices, redis_server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(RuntimeConfig, "configure_process_logging", lambda self: None)
    wf = definition([{"id": "a", "type": "transform", "config": {"template": 1}}], [])
    pending = (await start_job(services, wf, {})).job
    store, bus = CountingStore(services.store), CountingBus(services.bus)
    manager = JobManager(runtime_config(tmp_path, redis_server.host, redis_server.port), store, bus)

    cancelled = await manager._cancel_in_store(pending)

    assert (cancelled.status, cancelled.version) == (JobStatus.CANCELLED, pending.version + 1)
    assert store.calls == Counter(checkpoint=1) and bus.calls == Counter(publish_many=1)
    assert bus.batches == [[1]], "the outbox was empty: job_cancelled alone"
    logs = (await services.store.list_logs(pending.id)).items
    assert [entry.message for entry in logs] == ["job: cancelled while pending"]
    seen = [(event.sequence, event.type) async for event in services.bus.subscribe(pending.id)]
    assert seen == [(1, EventType.JOB_CANCELLED)]
