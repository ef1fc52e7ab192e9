"""The child job starter on a real SQLite store, without Ray: the manager's submit is a function that
records the child it is given. A workflow node without a version runs the version its job pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.job_loop.child_jobs import ChildJobStarter, pinned_versions
from engine.models import WorkflowDefinition
from engine.records import JobRecord
from storage.sqlite_store import SqliteStore

pytestmark = pytest.mark.timeout(30)


def doubling(factor: int) -> WorkflowDefinition:
    template = {"n": f"{{{{ input.n * {factor} }}}}"}
    return WorkflowDefinition.model_validate(
        {"name": "double", "nodes": [{"id": "twice", "type": "transform", "config": {"template": template}}]}
    )


def calling(child_id: str, version: int | None = None, mapped: bool = False) -> WorkflowDefinition:
    call: dict[str, Any] = {"workflow_id": child_id, **({} if version is None else {"version": version})}
    node = (
        {"id": "call", "type": "map", "config": {"items": [1], "node": {"type": "workflow", "config": call}}}
        if mapped
        else {"id": "call", "type": "workflow", "config": call}
    )
    return WorkflowDefinition.model_validate({"name": "parent", "nodes": [node]})


@pytest.fixture
async def store(tmp_path: Path):
    opened = SqliteStore(tmp_path / "jobs.sqlite")
    await opened.start()
    yield opened
    await opened.close()


async def test_a_job_pins_the_latest_version_of_each_workflow_it_calls_of_its_owner(store):
    child = await store.create_workflow("alice", doubling(2))
    await store.update_workflow(child.id, doubling(3))
    bobs = await store.create_workflow("bob", doubling(2))
    for definition in (calling(child.id), calling(child.id, mapped=True)):
        assert await pinned_versions(store, "alice", definition) == {child.id: 2}
    assert await pinned_versions(store, "alice", calling(child.id, version=1)) == {}, "a version is named"
    assert await pinned_versions(store, "alice", calling(bobs.id)) == {}, "another owner's is not found"
    assert await pinned_versions(store, "alice", calling("{{input.which}}")) == {}, "known when it runs"


async def test_a_child_starts_its_parents_pinned_version_even_after_the_workflow_changed(store):
    child = await store.create_workflow("alice", doubling(2))
    parent_workflow = await store.create_workflow("alice", calling(child.id))
    parent = JobRecord(
        id="parent",
        owner="alice",
        workflow_id=parent_workflow.id,
        workflow_version=1,
        called_versions=await pinned_versions(store, "alice", parent_workflow.definition),
    )
    await store.update_workflow(child.id, doubling(3))
    submitted: list[JobRecord] = []

    async def recording_submit(job: JobRecord) -> JobRecord:
        submitted.append(job)
        return job

    async def no_cancel(job_id: str) -> None:
        raise AssertionError(job_id)

    starter = ChildJobStarter(store, recording_submit, no_cancel, parent, max_depth=8)
    pinned = await starter.start(child.id, None, {"n": 1}, "call", "parent:call:1")
    named = await starter.start(child.id, 2, {"n": 1}, "call", "parent:call:2")
    assert (pinned.workflow_version, named.workflow_version) == (1, 2)
    assert pinned.idempotency_key == "child:parent:call:1"
    assert [job.workflow_chain for job in submitted] == [[parent_workflow.id]] * 2
