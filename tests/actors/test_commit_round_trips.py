"""Each commit of the job runner, and each job the manager ends outside an actor, costs one store call
(its checkpoint, log lines included) and one bus call (all its events): the real SQLite store and Redis
bus, counted by thin wrappers that pass every call on. No Ray: the manager's methods here make no Ray
call; its process logging setup is replaced, named so, to leave pytest's alone."""

from __future__ import annotations

import itertools
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
    JobRecord,
    JobStatus,
    LogEntry,
    NodeCheckpoint,
    NodeStatus,
)
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, Store
from tests.support.runner_jobs import CountedNode, definition, events_of, start_job
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


def small_job(*middle: dict[str, Any]) -> Any:
    """start -> shape (transform) -> `middle` -> end, in a row."""
    shape = {"id": "shape", "type": "transform", "config": {"template": {"q": "question {{input.n}}"}}}
    nodes = [{"id": "start", "type": "start"}, shape, *middle, {"id": "end", "type": "end"}]
    ids = [node["id"] for node in nodes]
    return definition(nodes, list(itertools.pairwise(ids)))


async def run_counted(services: RunnerServices, wf: Any) -> tuple[JobRecord, CountingStore, CountingBus]:
    created = await start_job(services, wf, {"n": 1})
    store, bus = CountingStore(services.store), CountingBus(services.bus)
    runner = JobRunner(replace(services, store=store, bus=bus), created.job, created.dag)
    assert await runner.run() is JobStatus.COMPLETED
    job = await services.store.get_job(created.job.id)
    assert job.version - created.job.version == store.calls["checkpoint"]
    return job, store, bus


async def test_every_commit_is_one_checkpoint_with_its_log_lines_and_one_publish(services: RunnerServices):
    """The small job of the benchmarks (an llm node in the middle; a node that is not pure stands for it
    here) takes two commits: the first starts the job, runs its pure nodes up to the llm node and starts
    that; the second takes the llm node's result, runs the end node and ends the job."""
    job, store, bus = await run_counted(
        services, small_job({"id": "ask", "type": "sleep", "config": {"seconds": 0}})
    )

    assert store.calls == Counter(checkpoint=2), "no separate log write"
    assert bus.calls == Counter(publish_many=2), "one publish_many per commit, none per event"
    events = await events_of(services, job.id)
    by_sequence = {event.sequence: (event.type, event.node_id) for event in events}
    assert [[by_sequence[sequence] for sequence in batch] for batch in bus.batches] == [
        [
            ("job_started", None),
            ("node_started", "start"),
            ("node_completed", "start"),
            ("node_started", "shape"),
            ("node_completed", "shape"),
            ("node_started", "ask"),
        ],
        [
            ("node_completed", "ask"),
            ("node_started", "end"),
            ("node_completed", "end"),
            ("job_completed", None),
        ],
    ]
    assert [e.sequence for e in events] == list(range(1, job.event_sequence + 1))
    logs = (await services.store.list_logs(job.id, limit=1000)).items
    assert len(logs) == len(events), "one log line per event, stored with its checkpoint"
    assert (logs[0].message, logs[-1].message) == ("job: started", "job: completed")
    assert job.result == {"ask": 0}


async def test_a_job_of_pure_nodes_is_one_commit(services: RunnerServices):
    counted = {"id": "count", "type": "counted", "config": {"value": "{{shape.output.q}}"}}
    job, store, bus = await run_counted(services, small_job(counted))

    assert store.calls == Counter(checkpoint=1) and bus.calls == Counter(publish_many=1)
    assert job.result == {"count": "question 1"}
    assert CountedNode.computed[f"{job.id}:count"] == 1, "run in the commit, not once more after it"
    assert job.started_at is not None and job.finished_at is not None
    assert [node.status for node in job.nodes.values()] == [NodeStatus.COMPLETED] * 4
    assert [(e.type, e.node_id) for e in await events_of(services, job.id)] == [
        ("job_started", None),
        *[
            (what, node)
            for node in ("start", "shape", "count", "end")
            for what in ("node_started", "node_completed")
        ],
        ("job_completed", None),
    ]


async def test_a_folded_node_is_not_run_again_once_its_commit_is_stored(services: RunnerServices):
    """The job goes on after the commit that folded `count` (a node that is not pure runs), so a run of it
    left among the commit's actions would have the time to compute it again."""
    counted = {"id": "count", "type": "counted", "config": {"value": 1}}
    wf = definition(
        [counted, {"id": "wait", "type": "sleep", "config": {"seconds": 0.1}}], [("count", "wait")]
    )
    job, store, _ = await run_counted(services, wf)
    assert store.calls == Counter(checkpoint=2)
    assert CountedNode.computed[f"{job.id}:count"] == 1


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
