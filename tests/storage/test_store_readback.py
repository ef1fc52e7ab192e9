"""Part of the Store contract, on every implementation: what a store accepts it reads back, and a row it
cannot read (damaged where it is kept: a real SQLite file, a mongomock collection) never breaks a listing.

Before the stores checked nesting, a job input, node output, error or definition nested 201-254 levels
deep was written (pydantic-core's serializer stops at 255) but never read back (its parser stops at 200)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.errors import NestingTooDeepError, NotFoundError, UnreadableRecordError
from engine.models import NodeSpec, WorkflowDefinition
from engine.nesting import MAX_STORED_DEPTH
from engine.records import ErrorInfo, JobChanges, JobEvent, JobRecord, JobStatus, LogEntry, NodeCheckpoint
from storage.mongo_store import MongoStore
from storage.protocols import Store
from storage.sqlite_store import SqliteStore
from tests.support.nesting import nested

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def job(job_id: str, created: float = 0, **fields: Any) -> JobRecord:
    return JobRecord(
        id=job_id,
        owner="alice",
        workflow_id="wf",
        workflow_version=1,
        created_at=T0 + timedelta(seconds=created),
        **fields,
    )


def definition(config: dict[str, Any]) -> WorkflowDefinition:
    return WorkflowDefinition(name="deep", nodes=[NodeSpec(id="n", type="transform", config=config)])


async def damage_job(store: Store, job_id: str) -> None:
    """Leave the job's stored input cut short, as a torn or hand-edited row would be."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE jobs SET input = '{\"cut' WHERE id = ?", (job_id,))
    else:
        assert isinstance(store, MongoStore)
        await store._jobs.update_one({"_id": job_id}, {"$set": {"input_json": '{"cut'}})


async def damage_workflow(store: Store, workflow_id: str) -> None:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE workflows SET definition = '[]' WHERE id = ?", (workflow_id,))
    else:
        assert isinstance(store, MongoStore)
        await store._workflows.update_one({"_id": workflow_id}, {"$set": {"definition_json": "[]"}})


async def damage_log(store: Store, job_id: str, message: str) -> None:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE logs SET data = 'nope' WHERE job_id = ? AND message = ?", (job_id, message))
    else:
        assert isinstance(store, MongoStore)
        await store._logs.update_one({"job_id": job_id, "message": message}, {"$set": {"data_json": "nope"}})


# what a store accepts, it reads back


@pytest.mark.parametrize("depth", [MAX_STORED_DEPTH + 1, 220])
async def test_a_job_nested_too_deep_to_read_back_is_refused_whole(store, depth):
    for field, value in (
        ("input", nested(depth)),
        ("result", nested(depth)),
        ("error", ErrorInfo(type="x", message="m", details=nested(depth))),
        ("nodes", {"n": NodeCheckpoint(node_id="n", node_type="t", output=nested(depth))}),
        ("pending_events", [JobEvent(sequence=1, type="job_started", workflow_id="wf", data=nested(depth))]),
    ):
        with pytest.raises(NestingTooDeepError, match=f"store's limit of {MAX_STORED_DEPTH} levels"):
            await store.create_job(job(f"deep-{field}", **{field: value}))
        with pytest.raises(NotFoundError):
            await store.get_job(f"deep-{field}")


@pytest.mark.parametrize("depth", [MAX_STORED_DEPTH + 1, 220])
async def test_a_checkpoint_or_log_nested_too_deep_to_read_back_stores_nothing(store, depth):
    await store.create_job(job("j"))
    writes = (
        {"changes": JobChanges(result=nested(depth))},
        {
            "changes": JobChanges(),
            "nodes": [NodeCheckpoint(node_id="n", node_type="t", output=nested(depth))],
        },
        {"changes": JobChanges(), "logs": [LogEntry(job_id="j", message="m", data=nested(depth))]},
    )
    for write in writes:
        with pytest.raises(NestingTooDeepError):
            await store.checkpoint("j", 0, **write)
    with pytest.raises(NestingTooDeepError):
        await store.append_logs([LogEntry(job_id="j", message="m", data=nested(depth))])
    stored = await store.get_job("j")
    assert (stored.version, stored.result, stored.nodes) == (0, None, {})
    assert (await store.list_logs("j")).total == 0


@pytest.mark.parametrize("depth", [MAX_STORED_DEPTH + 1, 220])
async def test_a_definition_nested_too_deep_to_read_back_is_refused(store, depth):
    with pytest.raises(NestingTooDeepError):
        await store.create_workflow("alice", definition(nested(depth)))
    workflow = await store.create_workflow("alice", definition({}))
    with pytest.raises(NestingTooDeepError):
        await store.update_workflow(workflow.id, definition(nested(depth)))
    assert (await store.get_workflow(workflow.id)).version == 1


@pytest.mark.parametrize("depth", [100, 199, 201, 220, 254])
async def test_every_part_of_a_job_a_store_accepts_it_reads_back_equal(store, depth):
    parts: dict[str, Any] = {
        "input": nested(depth),
        "result": nested(depth),
        "error": ErrorInfo(type="x", message="m", details=nested(depth)),
        "nodes": {"n": NodeCheckpoint(node_id="n", node_type="t", output=nested(depth))},
        "pending_events": [JobEvent(sequence=1, type="job_started", workflow_id="wf", data=nested(depth))],
    }
    for field, value in parts.items():
        try:
            await store.create_job(job(f"job-{field}", **{field: value}))
        except NestingTooDeepError:
            continue
        stored = await store.get_job(f"job-{field}")
        assert getattr(stored, field) == value
        assert [j.id for j in await store.get_jobs([f"job-{field}"])] == [f"job-{field}"]


async def test_what_a_store_takes_at_its_limit_reads_back_equal(store):
    deepest = MAX_STORED_DEPTH - 3
    created = await store.create_job(job("j", input=nested(MAX_STORED_DEPTH - 1)))
    node = NodeCheckpoint(node_id="n", node_type="t", status="completed", output=nested(deepest))
    await store.checkpoint("j", 0, JobChanges(result=nested(deepest)), [node])
    stored = await store.get_job("j")
    assert stored.input == created.input == nested(MAX_STORED_DEPTH - 1)
    assert stored.nodes["n"].output == stored.result == nested(deepest)
    assert [j.id for j in (await store.list_jobs()).items] == ["j"]
    workflow = await store.create_workflow("alice", definition(nested(MAX_STORED_DEPTH - 4)))
    assert (await store.get_workflow(workflow.id)).definition.nodes[0].config == nested(MAX_STORED_DEPTH - 4)


# a row that cannot be read


async def test_an_unreadable_job_is_left_out_of_listings_and_a_read_by_id_names_it(store):
    for index, job_id in enumerate(("a", "b", "c")):
        await store.create_job(job(job_id, created=index))
    await damage_job(store, "b")

    page = await store.list_jobs(owner="alice")
    assert ([j.id for j in page.items], page.total) == (["c", "a"], 3), "total still counts the row"
    second = await store.list_jobs(status=[JobStatus.PENDING], offset=1, limit=1)
    assert second.items == [] and second.total == 3, "the page of the unreadable row is empty"
    assert sorted(j.id for j in await store.get_jobs(["a", "b", "c"])) == ["a", "c"]
    with pytest.raises(UnreadableRecordError, match=r"^job b is stored but cannot be read"):
        await store.get_job("b")
    assert store.unreadable_rows() == 1, "one row, however often it was met"


async def test_an_unreadable_workflow_is_left_out_of_listings_and_a_read_by_id_names_it(store):
    kept = await store.create_workflow("alice", definition({}))
    damaged = await store.create_workflow("alice", definition({}))
    await damage_workflow(store, damaged.id)
    page = await store.list_workflows("alice")
    assert ([w.id for w in page.items], page.total) == ([kept.id], 2)
    with pytest.raises(UnreadableRecordError, match=rf"^workflow {damaged.id} is stored but cannot be read"):
        await store.get_workflow(damaged.id)
    assert store.unreadable_rows() == 1


async def test_an_unreadable_log_entry_is_left_out_of_the_job_logs(store):
    await store.create_job(job("j"))
    await store.append_logs([LogEntry(job_id="j", message=m) for m in ("one", "two", "three")])
    await damage_log(store, "j", "two")
    page = await store.list_logs("j")
    assert ([entry.message for entry in page.items], page.total) == (["one", "three"], 3)
    assert store.unreadable_rows() == 1
