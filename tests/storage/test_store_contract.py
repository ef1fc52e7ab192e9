"""One contract for every Store: the `store` fixture runs each test on SQLite, mongomock_motor and,
when MONGODB_URL is set, a real mongod. SQLite-only tests at the end cover the shared file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mongomock_motor import AsyncMongoMockClient
from pymongo.errors import ConnectionFailure

from engine.errors import ConflictError, InvalidWorkflowError, NotFoundError, StorageUnavailableError
from engine.records import (
    DurationStats,
    ErrorInfo,
    JobChanges,
    JobEvent,
    JobStatus,
    LogEntry,
    LogLevel,
    NodeCheckpoint,
    NodeStatus,
    TokenTotals,
    TriggerRef,
)
from storage.analytics import percentile
from storage.mongo_store import MongoStore
from storage.sqlite_store import MIGRATIONS, SCHEMA_VERSION, SqliteStore
from storage.store_factory import build_store
from tests.storage.store_contract_support import T0, at, definition, job

REPO_ROOT = Path(__file__).resolve().parents[2]


def node(node_id: str, node_type: str = "llm", **fields) -> NodeCheckpoint:
    return NodeCheckpoint(node_id=node_id, node_type=node_type, **fields)


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


# workflows


async def test_workflow_create_update_versions_and_delete(store):
    created = await store.create_workflow("alice", definition("First", "v1 text"))
    assert len(created.id) == 32 and int(created.id, 16) >= 0
    assert (created.version, created.name, created.description, created.owner) == (
        1,
        "First",
        "v1 text",
        "alice",
    )
    assert created.definition.nodes[0].config == {"$schema": "x"}
    assert_utc(created.created_at)
    assert await store.get_workflow(created.id) == created

    updated = await store.update_workflow(created.id, definition("Second", "v2 text"))
    assert (updated.version, updated.name, updated.description) == (2, "Second", "v2 text")
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert await store.get_workflow(created.id) == updated
    assert await store.get_workflow(created.id, version=1) == created

    await store.delete_workflow(created.id)
    with pytest.raises(NotFoundError, match=created.id):
        await store.get_workflow(created.id)
    assert await store.get_workflow(created.id, version=1) == created
    assert await store.get_workflow(created.id, version=2) == updated
    with pytest.raises(NotFoundError):
        await store.update_workflow(created.id, definition("Third"))
    with pytest.raises(NotFoundError):
        await store.delete_workflow(created.id)
    assert (await store.list_workflows("alice")).total == 0


async def test_unknown_workflow_and_version_are_not_found_by_name(store):
    with pytest.raises(NotFoundError, match="no-such-workflow"):
        await store.get_workflow("no-such-workflow")
    created = await store.create_workflow("alice", definition())
    with pytest.raises(NotFoundError, match=f"{created.id} version 7"):
        await store.get_workflow(created.id, version=7)


async def test_workflow_id_given_is_kept_and_reuse_conflicts(store):
    created = await store.create_workflow("alice", definition(), workflow_id="my-flow")
    assert created.id == "my-flow"
    with pytest.raises(ConflictError, match="my-flow"):
        await store.create_workflow("bob", definition(), workflow_id="my-flow")
    assert (await store.get_workflow("my-flow")).owner == "alice"


async def test_list_workflows_pages_without_duplicates_or_gaps(store):
    ids = [(await store.create_workflow("alice", definition(f"flow {i}"))).id for i in range(25)]
    await store.create_workflow("bob", definition("not alice's"))
    pages = [await store.list_workflows("alice", offset=offset, limit=7) for offset in range(0, 28, 7)]

    assert [len(p.items) for p in pages] == [7, 7, 7, 4]
    assert {p.total for p in pages} == {25}
    listed = [w.id for p in pages for w in p.items]
    assert len(listed) == len(set(listed)) == 25
    assert set(listed) == set(ids)
    records = [w for p in pages for w in p.items]
    keys = [(w.created_at, w.id) for w in records]
    assert keys == sorted(keys, reverse=True)


async def test_list_workflows_filters_by_owner(store):
    alice = await store.create_workflow("alice", definition("a"))
    bob = await store.create_workflow("bob", definition("b"))
    deleted = await store.create_workflow("bob", definition("gone"))
    await store.delete_workflow(deleted.id)

    assert [w.id for w in (await store.list_workflows("alice")).items] == [alice.id]
    assert [w.id for w in (await store.list_workflows("bob")).items] == [bob.id]
    everyone = await store.list_workflows(None)
    assert everyone.total == 2 and {w.id for w in everyone.items} == {alice.id, bob.id}
    assert (await store.list_workflows("carol")).total == 0


async def test_bad_paging_arguments_are_refused(store):
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        await store.list_workflows(None, limit=0)
    with pytest.raises(ValueError, match="offset must be >= 0, got -1"):
        await store.list_jobs(offset=-1)


# jobs


async def test_create_and_get_job_round_trips(store):
    record = job(
        "job-1",
        input={"text": "hi", "$weird.key": [1, 2]},
        idempotency_key="k1",
        started_at=datetime(2025, 3, 1, 12, 0, 1, 123456, tzinfo=UTC),
        nodes={"ask": node("ask", started_at=at(1), output={"a.b": {"$c": 1}})},
    )
    stored = await store.create_job(record)
    expected = record.model_copy(update={"started_at": datetime(2025, 3, 1, 12, 0, 1, 123000, tzinfo=UTC)})
    assert stored == expected
    assert await store.get_job("job-1") == expected
    assert_utc(stored.created_at)
    assert_utc(stored.nodes["ask"].started_at)
    with pytest.raises(NotFoundError, match="missing-job"):
        await store.get_job("missing-job")


async def test_get_jobs_returns_the_known_ones_with_their_nodes(store):
    await store.create_job(job("a"))
    await store.create_job(job("b"))
    await store.checkpoint("a", 0, JobChanges(status=JobStatus.RUNNING), [node("n1")])
    found = await store.get_jobs(["a", "missing", "b", "a"])
    assert sorted(j.id for j in found) == ["a", "b"]
    assert list({j.id: j for j in found}["a"].nodes) == ["n1"]
    assert await store.get_jobs([]) == []
    many = [f"absent-{i}" for i in range(1200)] + ["b"]
    assert [j.id for j in await store.get_jobs(many)] == ["b"], "more ids than one IN list takes"


async def test_idempotency_key_returns_the_existing_job(store):
    first = await store.create_job(job("job-1", idempotency_key="same"))
    again = await store.create_job(job("job-2", idempotency_key="same", input={"other": True}))
    assert again == first
    with pytest.raises(NotFoundError):
        await store.get_job("job-2")

    other_owner = await store.create_job(job("job-3", owner="bob", idempotency_key="same"))
    assert other_owner.id == "job-3"

    racing = await asyncio.gather(
        *(store.create_job(job(f"race-{i}", idempotency_key="race")) for i in range(4))
    )
    assert len({r.id for r in racing}) == 1
    assert (await store.list_jobs(owner="alice")).total == 2


async def test_a_rerun_keeps_the_id_of_the_job_it_reruns_with_its_seeded_checkpoints(store):
    await store.create_job(job("old"))
    kept = node("ask", status=NodeStatus.COMPLETED, attempts=2, output={"answer": 42})
    created = await store.create_job(job("again", rerun_of="old", nodes={"ask": kept}))
    assert (created.rerun_of, created.nodes) == ("old", {"ask": kept})
    assert (await store.get_job("again")).rerun_of == "old"
    assert (await store.get_jobs(["again"]))[0].rerun_of == "old"
    assert {j.id: j.rerun_of for j in (await store.list_jobs(owner="alice")).items} == {
        "again": "old",
        "old": None,
    }


async def test_a_jobs_trigger_and_pinned_versions_round_trip_and_jobs_are_listed_by_trigger(store):
    by_schedule = job("s1", created=1, trigger=TriggerRef(kind="schedule", id="sch-1"))
    await store.create_job(by_schedule)
    await store.create_job(job("s2", created=2, trigger=TriggerRef(kind="schedule", id="sch-1")))
    await store.create_job(job("w1", created=3, trigger=TriggerRef(kind="webhook", id="hook-1")))
    await store.create_job(job("plain", created=4, called_versions={"wf-child": 3}))
    assert await store.get_job("s1") == by_schedule
    plain = (await store.get_jobs(["plain"]))[0]
    assert (plain.trigger, plain.called_versions) == (None, {"wf-child": 3})
    assert [j.id for j in (await store.list_jobs(trigger_id="sch-1")).items] == ["s2", "s1"]
    assert [j.id for j in (await store.list_jobs(owner="bob", trigger_id="hook-1")).items] == []
    assert [(j.id, j.trigger) for j in (await store.list_jobs(trigger_id="hook-1")).items] == [
        ("w1", TriggerRef(kind="webhook", id="hook-1"))
    ]


async def test_duplicate_job_id_conflicts(store):
    await store.create_job(job("job-1"))
    with pytest.raises(ConflictError, match="job-1"):
        await store.create_job(job("job-1", owner="bob"))


async def test_list_jobs_filters_and_orders_newest_first(store):
    await store.create_job(job("a1", workflow_id="wf-a", created=1, status=JobStatus.COMPLETED))
    await store.create_job(job("a2", workflow_id="wf-a", created=2, status=JobStatus.FAILED))
    await store.create_job(job("a3", workflow_id="wf-b", created=3, status=JobStatus.RUNNING))
    await store.create_job(job("b1", owner="bob", workflow_id="wf-a", created=4, status=JobStatus.COMPLETED))

    def ids(page):
        return [j.id for j in page.items]

    assert ids(await store.list_jobs()) == ["b1", "a3", "a2", "a1"]
    assert ids(await store.list_jobs(owner="alice")) == ["a3", "a2", "a1"]
    assert ids(await store.list_jobs(owner="alice", workflow_id="wf-a")) == ["a2", "a1"]
    assert ids(await store.list_jobs(status=JobStatus.COMPLETED)) == ["b1", "a1"]
    page = await store.list_jobs(owner="alice", status=[JobStatus.FAILED, JobStatus.RUNNING])
    assert (ids(page), page.total) == (["a3", "a2"], 2)
    assert (await store.list_jobs(owner="carol")).total == 0


async def test_list_jobs_totals_follow_each_job_status(store):
    await store.create_job(job("a1", created=1))
    await store.create_job(job("a2", created=2))
    await store.create_job(job("b1", owner="bob", created=3))
    await store.checkpoint("a1", 0, JobChanges(status=JobStatus.FAILED))

    async def total(**filters):
        return (await store.list_jobs(limit=1, **filters)).total

    assert await total() == 3
    assert await total(owner="alice") == 2
    assert await total(owner="alice", status=JobStatus.FAILED) == 1
    assert await total(status=[JobStatus.PENDING, JobStatus.FAILED]) == 3
    await store.checkpoint("a1", 1, JobChanges(status=JobStatus.RUNNING))
    assert await total(status=JobStatus.FAILED) == 0
    assert await total(owner="alice", status=JobStatus.RUNNING) == 1


async def test_list_jobs_pages_without_duplicates_or_gaps(store):
    for i in range(25):
        await store.create_job(job(f"job-{i:02}", created=i // 3))
    await store.create_job(job("bob-job", owner="bob"))
    pages = [await store.list_jobs(owner="alice", offset=offset, limit=7) for offset in range(0, 28, 7)]

    assert [len(p.items) for p in pages] == [7, 7, 7, 4]
    assert {p.total for p in pages} == {25}
    listed = [j.id for p in pages for j in p.items]
    assert listed == [f"job-{i:02}" for i in reversed(range(25))]


async def test_checkpoint_applies_changes_and_upserts_nodes(store):
    await store.create_job(job("job-1", nodes={"ask": node("ask"), "post": node("post", "http")}))

    version = await store.checkpoint(
        "job-1",
        0,
        JobChanges(status=JobStatus.RUNNING, started_at=at(1), actor_name="actor-7", event_sequence=3),
        [node("ask", status=NodeStatus.RUNNING, attempts=1, started_at=at(1))],
    )
    assert version == 1
    done_ask = node(
        "ask",
        status=NodeStatus.COMPLETED,
        attempts=1,
        started_at=at(1),
        finished_at=at(2.5),
        output={"text": "hello"},
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )
    extra = node("extra", "code", status=NodeStatus.SKIPPED, inactive_targets=["x"])
    assert await store.checkpoint("job-1", 1, JobChanges(event_sequence=4), [done_ask, extra]) == 2
    failed_post = node(
        "post",
        "http",
        status=NodeStatus.FAILED,
        error=ErrorInfo(type="node_error", message="boom", details={"status": 500}),
    )
    assert await store.checkpoint("job-1", 2, JobChanges(), [failed_post]) == 3
    final = JobChanges(
        status=JobStatus.FAILED,
        finished_at=at(4),
        result={"partial": [1, 2]},
        error=ErrorInfo(type="node_error", message="post failed"),
    )
    assert await store.checkpoint("job-1", 3, final) == 4

    stored = await store.get_job("job-1")
    assert stored.version == 4
    assert (stored.status, stored.started_at, stored.finished_at) == (JobStatus.FAILED, at(1), at(4))
    assert (stored.actor_name, stored.event_sequence) == ("actor-7", 4)
    assert stored.result == {"partial": [1, 2]}
    assert stored.error == ErrorInfo(type="node_error", message="post failed")
    assert stored.nodes == {"ask": done_ask, "post": failed_post, "extra": extra}

    replaced = node("ask", status=NodeStatus.PENDING, attempts=2)
    assert await store.checkpoint("job-1", 4, JobChanges(), [replaced]) == 5
    assert (await store.get_job("job-1")).nodes["ask"] == replaced


async def test_a_nodes_durable_steps_round_trip_with_its_checkpoint(store):
    await store.create_job(job("job-1", nodes={"agent": node("agent", "agent")}))
    steps = {"turn-0": {"content": None, "tool_calls": [{"id": "c1"}]}, "turn-0.c1": {"output": [1, "ü"]}}
    running = node("agent", "agent", status=NodeStatus.RUNNING, attempts=1, steps=steps)
    assert await store.checkpoint("job-1", 0, JobChanges(), [running]) == 1
    assert (await store.get_job("job-1")).nodes["agent"].steps == steps
    more = running.model_copy(update={"steps": {**steps, "turn-1": {"content": "done"}}})
    assert await store.checkpoint("job-1", 1, JobChanges(), [more]) == 2
    assert (await store.get_jobs(["job-1"]))[0].nodes["agent"] == more


def pending_event(sequence: int, **data) -> JobEvent:
    return JobEvent(
        sequence=sequence,
        type="node_completed",
        time=datetime(2025, 3, 1, 12, 0, 1, 123456, tzinfo=UTC),
        job_id="job-1",
        workflow_id="wf",
        node_id="ask",
        data=data,
    )


async def test_checkpoint_stores_its_events_as_the_jobs_outbox_until_the_next_replaces_them(store):
    await store.create_job(job("job-1"))
    assert (await store.get_job("job-1")).pending_events == []

    first = [pending_event(1, output={"$x": {"a.b": None}}, text="héllo"), pending_event(2)]
    await store.checkpoint("job-1", 0, JobChanges(event_sequence=2, pending_events=first))
    stored = await store.get_job("job-1")
    assert (stored.event_sequence, stored.pending_events) == (2, first), "events round-trip exactly"

    await store.checkpoint("job-1", 1, JobChanges(actor_name="actor-2"))
    assert (await store.get_job("job-1")).pending_events == first, "a checkpoint without events keeps them"

    second = [pending_event(3, output=[1, 2])]
    await store.checkpoint("job-1", 2, JobChanges(event_sequence=3, pending_events=second))
    assert (await store.get_job("job-1")).pending_events == second
    await store.checkpoint("job-1", 3, JobChanges(pending_events=[]))
    assert (await store.get_job("job-1")).pending_events == []
    listed = await store.list_jobs(owner="alice")
    assert listed.items[0].pending_events == []


async def test_checkpoint_with_a_stale_version_conflicts_naming_both_versions(store):
    await store.create_job(job("job-1"))
    await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.RUNNING))
    with pytest.raises(ConflictError, match="expected version 0, but the stored version is 1"):
        await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.COMPLETED), [node("ask")])
    stored = await store.get_job("job-1")
    assert (stored.version, stored.status, stored.nodes) == (1, JobStatus.RUNNING, {})


async def test_checkpoint_of_an_unknown_job_is_not_found(store):
    with pytest.raises(NotFoundError, match="ghost"):
        await store.checkpoint("ghost", 0, JobChanges(status=JobStatus.RUNNING))


async def test_concurrent_checkpoints_with_the_same_version_exactly_one_wins(store):
    await store.create_job(job("job-1"))
    results = await asyncio.gather(
        store.checkpoint("job-1", 0, JobChanges(actor_name="first"), [node("a", output=1)]),
        store.checkpoint("job-1", 0, JobChanges(actor_name="second"), [node("a", output=2)]),
        return_exceptions=True,
    )
    winners = [r for r in results if r == 1]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert (len(winners), len(losers)) == (1, 1)
    stored = await store.get_job("job-1")
    winner = "first" if results[0] == 1 else "second"
    assert (stored.version, stored.actor_name) == (1, winner)
    assert stored.nodes["a"].output == (1 if winner == "first" else 2)


# logs


async def test_logs_page_oldest_first_in_append_order(store):
    await store.create_job(job("job-1"))
    await store.create_job(job("job-2"))
    late_first = [
        LogEntry(job_id="job-1", time=at(100 - i), message=f"m{i}", data={"i": i}) for i in range(6)
    ]
    await store.append_logs(late_first)
    await store.append_logs([LogEntry(job_id="job-2", message="elsewhere")])
    await store.append_logs(
        [
            LogEntry(job_id="job-1", time=at(i), message=f"m{i}", level=LogLevel.ERROR, node_id="ask")
            for i in range(6, 10)
        ]
    )

    page = await store.list_logs("job-1", offset=3, limit=4)
    assert page.total == 10
    assert [e.message for e in page.items] == ["m3", "m4", "m5", "m6"]
    assert page.items[0] == late_first[3].model_copy(update={"time": at(97)})
    assert (page.items[3].level, page.items[3].node_id) == (LogLevel.ERROR, "ask")
    assert_utc(page.items[0].time)
    everything = await store.list_logs("job-1", limit=100)
    assert [e.message for e in everything.items] == [f"m{i}" for i in range(10)]
    assert (await store.list_logs("job-2")).total == 1


async def test_logs_of_an_unknown_job_are_refused(store):
    with pytest.raises(NotFoundError, match="ghost"):
        await store.append_logs([LogEntry(job_id="ghost", message="x")])
    assert (await store.list_logs("ghost")).total == 0


def entries(job_id: str, *messages: str) -> list[LogEntry]:
    return [LogEntry(job_id=job_id, time=at(i), message=m, data={"i": i}) for i, m in enumerate(messages)]


async def test_checkpoint_with_logs_stores_both_and_its_logs_follow_earlier_ones(store):
    await store.create_job(job("job-1"))
    await store.create_job(job("job-2"))
    await store.append_logs(entries("job-1", "appended"))
    running = node("ask", status=NodeStatus.RUNNING, attempts=1)
    first = entries("job-1", "job: started", "node ask: started")
    assert await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.RUNNING), [running], first) == 1
    await store.append_logs(entries("job-2", "elsewhere") + entries("job-1", "node ask: a line of its own"))
    done = entries("job-1", "node ask: completed", "job: completed")
    assert await store.checkpoint("job-1", 1, JobChanges(status=JobStatus.COMPLETED), logs=done) == 2
    assert await store.checkpoint("job-1", 2, JobChanges(actor_name="a"), logs=()) == 3, "no logs: none added"

    stored = await store.get_job("job-1")
    assert (stored.version, stored.status, stored.nodes) == (3, JobStatus.COMPLETED, {"ask": running})
    logs = await store.list_logs("job-1")
    assert [e.message for e in logs.items] == [
        "appended",
        "job: started",
        "node ask: started",
        "node ask: a line of its own",
        "node ask: completed",
        "job: completed",
    ]
    assert logs.items[1:3] == first and logs.items[4:] == done, "entries round-trip exactly"
    assert [e.message for e in (await store.list_logs("job-2")).items] == ["elsewhere"]


async def test_a_checkpoint_that_loses_the_race_stores_none_of_its_logs(store):
    await store.create_job(job("job-1"))
    await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.RUNNING), logs=entries("job-1", "won"))
    with pytest.raises(ConflictError, match="expected version 0, but the stored version is 1"):
        await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.FAILED), logs=entries("job-1", "lost"))
    with pytest.raises(NotFoundError, match="ghost"):
        await store.checkpoint("ghost", 0, JobChanges(), logs=entries("ghost", "nobody"))
    assert [e.message for e in (await store.list_logs("job-1")).items] == ["won"]
    assert (await store.list_logs("ghost")).total == 0
    await store.append_logs(entries("job-1", "later"))
    assert [e.message for e in (await store.list_logs("job-1")).items] == ["won", "later"]


async def test_a_checkpoint_refuses_log_entries_of_another_job_and_stores_nothing(store):
    await store.create_job(job("job-1"))
    await store.create_job(job("job-2"))
    stray = entries("job-1", "mine") + entries("job-2", "theirs")
    with pytest.raises(ValueError, match="checkpoint of job job-1 cannot store log entries of job job-2"):
        await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.RUNNING), logs=stray)
    assert (await store.get_job("job-1")).version == 0
    assert (await store.list_logs("job-1")).total == (await store.list_logs("job-2")).total == 0


# analytics


async def _build_analytics_data(store) -> None:
    """Six jobs of alice in [T0, T0+1h), one of bob, two of alice outside the window."""
    await store.create_workflow("alice", definition("First flow"), workflow_id="wf1")
    await store.create_workflow("alice", definition("Second flow"), workflow_id="wf2")
    await store.delete_workflow("wf2")

    def usage(prompt: int, completion: int) -> dict[str, int]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def ran(node_id: str, node_type: str, status: NodeStatus, start: float, end: float | None, **fields):
        finished = None if end is None else at(end)
        return node(node_id, node_type, status=status, started_at=at(start), finished_at=finished, **fields)

    completed, failed = NodeStatus.COMPLETED, NodeStatus.FAILED
    runs = [
        (
            "j1",
            "wf1",
            JobStatus.COMPLETED,
            10,
            [ran("n1", "llm", completed, 0, 2, usage=usage(10, 5)), ran("n2", "http", completed, 2, 3.5)],
        ),
        (
            "j2",
            "wf1",
            JobStatus.COMPLETED,
            20,
            [ran("n1", "llm", completed, 0, 4, usage=usage(20, 10)), ran("n2", "http", failed, 4, 4.5)],
        ),
        ("j3", "wf1", JobStatus.FAILED, 5, [ran("n1", "llm", failed, 0, 1), node("n2", "http")]),
        ("j4", "wf2", JobStatus.CANCELLED, 30, []),
        (
            "j5",
            "wf2",
            JobStatus.RUNNING,
            None,
            [ran("n1", "llm", NodeStatus.RUNNING, 0, None, usage=usage(1, 0))],
        ),
    ]
    for index, (job_id, workflow_id, status, duration, nodes) in enumerate(runs):
        await store.create_job(job(job_id, workflow_id=workflow_id, created=60 * index))
        finished = None if duration is None else at(60 * index + 1 + duration)
        changes = JobChanges(status=status, started_at=at(60 * index + 1), finished_at=finished)
        await store.checkpoint(job_id, 0, changes, nodes)
    await store.create_job(job("j6", workflow_id="wf-unknown", created=3599.999))
    await store.create_job(job("early", created=-0.001, status=JobStatus.COMPLETED))
    await store.create_job(job("late", created=3600, status=JobStatus.COMPLETED))
    await store.create_job(
        job("bob-1", owner="bob", created=5, status=JobStatus.COMPLETED, started_at=at(5), finished_at=at(6))
    )


async def test_job_analytics_numbers_on_a_hand_built_data_set(store):
    await _build_analytics_data(store)
    report = await store.job_analytics("alice", since=T0, until=at(3600))

    assert report.total == 6
    assert report.counts_by_status == {
        "cancelled": 1,
        "completed": 2,
        "failed": 1,
        "pending": 1,
        "running": 1,
    }
    assert report.success_rate == 0.5
    assert (report.p50_duration_s, report.p95_duration_s) == (10.0, 30.0)
    assert report.by_node_type == {
        "llm": DurationStats(count=4, failed=1, p50_s=2.0, p95_s=4.0),
        "http": DurationStats(count=3, failed=1, p50_s=0.5, p95_s=1.5),
    }
    assert report.llm_tokens == TokenTotals(prompt_tokens=31, completion_tokens=15, total_tokens=46)
    assert (report.since, report.until) == (T0, at(3600))

    everyone = await store.job_analytics(None, since=T0, until=at(3600))
    assert (everyone.total, everyone.counts_by_status["completed"]) == (7, 3)
    assert (await store.job_analytics("alice")).total == 8
    nothing = await store.job_analytics("carol")
    assert (nothing.total, nothing.success_rate, nothing.p50_duration_s) == (0, None, None)


async def test_workflow_analytics_numbers_on_a_hand_built_data_set(store):
    await _build_analytics_data(store)
    report = await store.workflow_analytics("alice", since=T0, until=at(3600))
    summary = [
        (
            w.workflow_id,
            w.name,
            w.total,
            w.counts_by_status,
            w.success_rate,
            w.p50_duration_s,
            w.p95_duration_s,
        )
        for w in report.workflows
    ]
    assert summary == [
        ("wf1", "First flow", 3, {"completed": 2, "failed": 1}, 2 / 3, 10.0, 20.0),
        ("wf2", "Second flow", 2, {"cancelled": 1, "running": 1}, 0.0, 30.0, 30.0),
        ("wf-unknown", None, 1, {"pending": 1}, None, None, None),
    ]
    tokens = [w.llm_tokens for w in report.workflows]
    assert tokens == [
        TokenTotals(prompt_tokens=30, completion_tokens=15, total_tokens=45),
        TokenTotals(prompt_tokens=1, completion_tokens=0, total_tokens=1),
        TokenTotals(),
    ]


async def test_a_node_a_rerun_kept_counts_once_in_analytics_in_the_job_that_ran_it(store):
    tokens = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    ask = node(
        "ask", status=NodeStatus.COMPLETED, started_at=at(1), finished_at=at(3), attempts=1, usage=tokens
    )
    await store.create_job(job("old", created=0, status=JobStatus.FAILED, nodes={"ask": ask}))
    kept = ask.model_copy(update={"kept_from": "old"})
    again = node("post", "http", status=NodeStatus.COMPLETED, started_at=at(10), finished_at=at(11))
    nodes = {"ask": kept, "post": again}
    await store.create_job(job("again", created=9, rerun_of="old", status=JobStatus.COMPLETED, nodes=nodes))
    assert (await store.get_job("again")).nodes["ask"].kept_from == "old"
    report = await store.job_analytics("alice")
    assert report.by_node_type == {
        "llm": DurationStats(count=1, failed=0, p50_s=2.0, p95_s=2.0),
        "http": DurationStats(count=1, failed=0, p50_s=1.0, p95_s=1.0),
    }
    assert report.llm_tokens == TokenTotals(prompt_tokens=7, completion_tokens=3, total_tokens=10)
    (flow,) = (await store.workflow_analytics("alice")).workflows
    assert flow.llm_tokens == TokenTotals(prompt_tokens=7, completion_tokens=3, total_tokens=10)


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, p) for p in (20, 50, 95, 100)] == [1.0, 3.0, 5.0, 5.0]
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, 0)


async def test_ping(store):
    assert await store.ping() is True


# factory


async def test_build_store_picks_sqlite_without_a_url_and_mongo_with_one(tmp_path):
    embedded = build_store(None, "workflows", tmp_path)
    assert isinstance(embedded, SqliteStore) and embedded.path == tmp_path / "workflow.db"
    assert isinstance(build_store("", "workflows", tmp_path), SqliteStore)
    remote = build_store("mongodb://127.0.0.1:1", "workflows", tmp_path)
    assert isinstance(remote, MongoStore)
    await remote.close()


async def test_mongo_store_refuses_node_ids_that_would_address_other_fields_on_mongomock_motor():
    mock_store = MongoStore(AsyncMongoMockClient(tz_aware=True), "guard")
    await mock_store.start()
    await mock_store.create_job(job("job-1"))
    for bad in ("a.b", "$where", ""):
        with pytest.raises(InvalidWorkflowError, match="letters, digits"):
            await mock_store.checkpoint("job-1", 0, JobChanges(), [node(bad)])
    assert (await mock_store.get_job("job-1")).version == 0
    await mock_store.close()


async def test_mongo_job_documents_written_before_the_outbox_and_reruns_read_as_neither_on_mongomock_motor():
    client = AsyncMongoMockClient(tz_aware=True)
    mock_store = MongoStore(client, "older")
    await mock_store.start()
    await mock_store.create_job(job("job-1"))
    older = {"$unset": {"pending_events_json": "", "rerun_of": ""}}
    await client["older"]["jobs"].update_one({"_id": "job-1"}, older)
    assert (await mock_store.get_job("job-1")).pending_events == []
    assert (await mock_store.get_job("job-1")).rerun_of is None
    await mock_store.close()


async def test_mongo_lost_log_lines_keep_their_numbers_with_a_failing_insert_on_mongomock_motor(
    monkeypatch: pytest.MonkeyPatch,
):
    """Stands for a crash between the checkpoint's update and its log insert: the lines are lost, and the
    numbers they reserved stay taken, so later lines still sort after the ones stored before."""
    mock_store = MongoStore(AsyncMongoMockClient(tz_aware=True), "gap")
    await mock_store.start()
    await mock_store.create_job(job("job-1"))
    await mock_store.append_logs(entries("job-1", "before"))

    async def connection_lost(*args, **kwargs):
        raise ConnectionFailure("connection lost while inserting the log entries")

    with monkeypatch.context() as patch:
        patch.setattr(mock_store._logs, "insert_many", connection_lost)
        with pytest.raises(StorageUnavailableError, match="connection lost"):
            await mock_store.checkpoint(
                "job-1", 0, JobChanges(status=JobStatus.RUNNING), logs=entries("job-1", "x", "y")
            )
    assert (await mock_store.get_job("job-1")).status is JobStatus.RUNNING
    await mock_store.checkpoint("job-1", 1, JobChanges(), logs=entries("job-1", "after"))
    await mock_store.append_logs(entries("job-1", "last"))
    seqs = [doc["seq"] async for doc in mock_store._logs.find({"job_id": "job-1"}).sort("seq")]
    assert seqs == [1, 4, 5], "the lost lines' numbers 2 and 3 stay reserved"
    assert [e.message for e in (await mock_store.list_logs("job-1")).items] == ["before", "after", "last"]
    await mock_store.close()


# SQLite specifics


async def test_sqlite_two_store_instances_on_one_file_both_write(tmp_path, open_sqlite):
    path = tmp_path / "shared.db"
    first, second = await asyncio.gather(open_sqlite(path), open_sqlite(path))
    for i in range(8):
        await first.create_job(job(f"job-{i}"))

    async def drive(store, job_id: str) -> None:
        for version in range(25):
            await store.checkpoint(job_id, version, JobChanges(event_sequence=version), [node(f"n{version}")])

    await asyncio.gather(*(drive(first if i % 2 else second, f"job-{i}") for i in range(8)))
    for reader in (first, second):
        jobs = (await reader.list_jobs(limit=10)).items
        assert {(j.version, len(j.nodes), j.event_sequence) for j in jobs} == {(25, 25, 24)}

    await second.checkpoint("job-0", 25, JobChanges(status=JobStatus.COMPLETED))
    with pytest.raises(ConflictError, match="stored version is 26"):
        await first.checkpoint("job-0", 25, JobChanges(status=JobStatus.FAILED))
    assert (await first.get_job("job-0")).status == JobStatus.COMPLETED


async def test_sqlite_another_process_writes_the_same_file(tmp_path, open_sqlite):
    path = tmp_path / "shared.db"
    local = await open_sqlite(path)
    for job_id in ("mine", "theirs"):
        await local.create_job(job(job_id))
    script = textwrap.dedent(
        f"""
        import asyncio
        from engine.records import JobChanges, NodeCheckpoint
        from storage.sqlite_store import SqliteStore

        async def main():
            store = SqliteStore({str(path)!r})
            await store.start()
            for version in range(200):
                node = NodeCheckpoint(node_id="n", node_type="code", attempts=version)
                await store.checkpoint("theirs", version, JobChanges(event_sequence=version), [node])
            await store.close()

        asyncio.run(main())
        """
    )
    other = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=REPO_ROOT)
    for version in range(200):
        await local.checkpoint(
            "mine", version, JobChanges(event_sequence=version), [node("n", attempts=version)]
        )
    assert await other.wait() == 0
    for job_id in ("mine", "theirs"):
        stored = await local.get_job(job_id)
        assert (stored.version, stored.event_sequence, stored.nodes["n"].attempts) == (200, 199, 199)


async def test_sqlite_schema_is_versioned_and_a_newer_file_is_refused(tmp_path, open_sqlite):
    path = tmp_path / "workflow.db"
    store = await open_sqlite(path)
    await store.create_workflow("alice", definition(), workflow_id="kept")
    await store.close()

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = await open_sqlite(path)
    assert (await reopened.get_workflow("kept")).name == "Summarise"
    await reopened.close()

    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        await open_sqlite(path)


async def test_sqlite_a_file_of_the_first_schema_is_migrated_and_its_jobs_have_an_empty_outbox(
    tmp_path, open_sqlite
):
    path = tmp_path / "workflow.db"
    with sqlite3.connect(path) as raw:
        for statement in MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("PRAGMA user_version = 1")
        raw.execute(
            "INSERT INTO jobs (id, owner, workflow_id, workflow_version, status, input, result, error, "
            "created_at, version, event_sequence, schema_version) "
            "VALUES ('old', 'alice', 'wf', 1, 'running', '{}', 'null', NULL, 0, 3, 5, 1)"
        )
    store = await open_sqlite(path)
    old = await store.get_job("old")
    assert (
        old.status,
        old.event_sequence,
        old.pending_events,
        old.owner_roles,
        old.rerun_of,
        old.waiting_on,
        old.called_versions,
        old.trigger,
    ) == (
        JobStatus.RUNNING,
        5,
        [],
        [],
        None,
        [],
        {},
        None,
    )
    assert (await store.list_jobs(owner="alice", status=JobStatus.RUNNING)).total == 1
    await store.checkpoint("old", 3, JobChanges(event_sequence=6, pending_events=[pending_event(6)]))
    assert [e.sequence for e in (await store.get_job("old")).pending_events] == [6]
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10


async def test_sqlite_checkpoints_are_stored_as_json(tmp_path, open_sqlite):
    path = tmp_path / "workflow.db"
    store = await open_sqlite(path)
    await store.create_job(job("job-1", input={"q": "why"}))
    checkpoint = node("ask", status=NodeStatus.COMPLETED, output={"answer": [1, "two"]}, started_at=at(1))
    await store.checkpoint("job-1", 0, JobChanges(result={"ok": True}), [checkpoint])

    with sqlite3.connect(path) as raw:
        (stored_node,) = raw.execute("SELECT checkpoint FROM job_nodes WHERE job_id = 'job-1'").fetchone()
        stored_input, stored_result = raw.execute("SELECT input, result FROM jobs").fetchone()
    assert json.loads(stored_node) == json.loads(checkpoint.model_dump_json())
    assert (json.loads(stored_input), json.loads(stored_result)) == ({"q": "why"}, {"ok": True})


async def test_sqlite_a_checkpoint_whose_log_lines_cannot_be_stored_stores_nothing(tmp_path, open_sqlite):
    path = tmp_path / "workflow.db"
    store = await open_sqlite(path)
    await store.create_job(job("job-1"))
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TRIGGER refuse_logs BEFORE INSERT ON logs BEGIN SELECT RAISE(ABORT, 'no logs'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="no logs"):
        await store.checkpoint(
            "job-1", 0, JobChanges(status=JobStatus.RUNNING), [node("ask")], entries("job-1", "started")
        )
    stored = await store.get_job("job-1")
    assert (stored.version, stored.status, stored.nodes) == (0, JobStatus.PENDING, {}), "rolled back"
    assert await store.checkpoint("job-1", 0, JobChanges(status=JobStatus.RUNNING)) == 1, "without logs"


async def test_sqlite_write_waiting_for_a_lock_leaves_the_event_loop_free(tmp_path, open_sqlite):
    """Writes run on the loop's thread: one waiting for another process's lock must back off with
    asyncio.sleep, never wait inside SQLite, or every coroutine of the process would stall with it."""
    path = tmp_path / "workflow.db"
    store = await open_sqlite(path)
    await store.create_job(job("job-1"))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(store.checkpoint("job-1", 0, JobChanges(event_sequence=1)))
        loop = asyncio.get_running_loop()
        longest_stall = 0.0
        for _ in range(20):
            before = loop.time()
            await asyncio.sleep(0.01)
            longest_stall = max(longest_stall, loop.time() - before - 0.01)
        assert not waiting.done()
        assert longest_stall < 0.2, f"the loop stalled {longest_stall:.3f} s while a write waited"
        holder.execute("COMMIT")
        assert await waiting == 1
    finally:
        holder.close()


async def test_sqlite_write_waits_out_a_lock_held_by_another_connection(tmp_path, open_sqlite):
    path = tmp_path / "workflow.db"
    await (await open_sqlite(path)).create_job(job("job-1"))
    impatient = SqliteStore(path, busy_timeout_ms=10, busy_retries=8)
    hopeless = SqliteStore(path, busy_timeout_ms=10, busy_retries=1)
    await impatient.start()
    await hopeless.start()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailableError, match="stayed locked"):
            await hopeless.checkpoint("job-1", 0, JobChanges(event_sequence=1))
        waiting = asyncio.create_task(impatient.checkpoint("job-1", 0, JobChanges(event_sequence=2)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        holder.execute("COMMIT")
        assert await waiting == 1
    finally:
        holder.close()
        await impatient.close()
        await hopeless.close()
    reader = await open_sqlite(path)
    assert (await reader.get_job("job-1")).event_sequence == 2
