"""Sub-workflows on a real local Ray: a workflow node runs a child job (its own actor, events, checkpoints)
and waits for it holding nothing; failures, retries, cancellation, kill -9 of the parent, the admission
limit, the depth limit and the owner check."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from actors.ray_runtime.bootstrap import ServiceRuntime
from engine.models import WorkflowDefinition
from engine.records import EventType, JobRecord, JobStatus, NodeStatus
from tests.support.ray_jobs import RuntimeFactory, finished, job_actor, record, wait_for

pytestmark = pytest.mark.slow

DOUBLE = {
    "name": "double",
    "nodes": [{"id": "twice", "type": "transform", "config": {"template": {"n": "{{ input.n * 2 }}"}}}],
}


async def create(runtime: ServiceRuntime, definition: dict[str, Any], owner: str = "alice") -> str:
    workflow = await runtime.store.create_workflow(owner, WorkflowDefinition.model_validate(definition))
    return workflow.id


def calling(child_id: str, *, retry: int = 1, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": "parent",
        "nodes": [
            {
                "id": "call",
                "type": "workflow",
                "config": {"workflow_id": child_id, "input": {"n": "{{input.n}}"}},
                "retry": {"max_attempts": retry, "backoff": 0.01},
            },
            *(extra or []),
        ],
    }


async def run(runtime: ServiceRuntime, definition: dict[str, Any], data: dict[str, Any]) -> JobRecord:
    workflow_id = await create(runtime, definition)
    job = await runtime.controller.execute_workflow(workflow_id, data, owner="alice")
    return await wait_for(runtime, job.id, finished)


async def children(runtime: ServiceRuntime, parent_id: str) -> list[JobRecord]:
    return (await runtime.store.list_jobs(parent_job_id=parent_id)).items


@pytest.mark.timeout(120)
async def test_a_child_job_runs_the_called_workflow_and_its_result_is_the_nodes_output(
    make_runtime: RuntimeFactory,
):
    runtime = await make_runtime(MAX_ACTIVE_JOBS=1)
    parent = await run(runtime, calling(await create(runtime, DOUBLE)), {"n": 21})
    assert parent.status is JobStatus.COMPLETED, parent.error
    assert parent.result == {"call": {"twice": {"n": 42}}}, "one admission slot: the waiting parent held none"
    (child,) = await children(runtime, parent.id)
    assert (child.status, child.parent_job_id, child.parent_node_id) == (
        JobStatus.COMPLETED,
        parent.id,
        "call",
    )
    assert child.owner == parent.owner and child.input == {"n": 21}
    assert parent.nodes["call"].wait is not None
    assert parent.nodes["call"].wait.settings["child_job_id"] == child.id
    events = [e async for e in runtime.bus.subscribe(parent.id)]
    started = [e.data for e in events if e.type == EventType.CHILD_JOB_STARTED]
    ended = [e.data for e in events if e.type == EventType.CHILD_JOB_FINISHED]
    assert started == [{"child_job_id": child.id}]
    assert ended == [{"child_job_id": child.id, "status": "completed"}]


@pytest.mark.timeout(120)
async def test_a_failed_child_fails_the_node_and_a_retry_starts_a_new_child(shared_runtime: ServiceRuntime):
    runtime = shared_runtime
    failing = {
        "name": "fails",
        "nodes": [{"id": "boom", "type": "transform", "config": {"template": "{{x.y}}"}}],
    }
    child_id = await create(runtime, failing)
    once = await run(runtime, calling(child_id), {"n": 1})
    assert once.status is JobStatus.FAILED
    error = once.nodes["call"].error
    (child,) = await children(runtime, once.id)
    assert error is not None and error.type == "node_error" and child.id in error.message
    assert child.status is JobStatus.FAILED

    twice = await run(runtime, calling(child_id, retry=2), {"n": 1})
    assert twice.status is JobStatus.FAILED and twice.nodes["call"].attempts == 2
    started = await children(runtime, twice.id)
    assert len({c.id for c in started}) == 2, "each attempt started its own child"
    wait = twice.nodes["call"].wait
    assert wait is not None
    assert {*wait.settings["earlier_child_job_ids"], wait.settings["child_job_id"]} == {c.id for c in started}


@pytest.mark.timeout(120)
async def test_cancelling_the_parent_cancels_its_running_child(
    shared_runtime: ServiceRuntime, tmp_path: Path
):
    runtime = shared_runtime
    slow = {"name": "slow", "nodes": [record("sleep", tmp_path / "ledger", seconds=30)]}
    workflow_id = await create(runtime, calling(await create(runtime, slow)))
    parent = await runtime.controller.execute_workflow(workflow_id, {"n": 1}, owner="alice")
    await wait_for(runtime, parent.id, lambda job: bool(job.waiting_on))
    (child,) = await children(runtime, parent.id)
    await wait_for(runtime, child.id, lambda job: job.status is JobStatus.RUNNING)
    cancelled = await runtime.controller.cancel_job(parent.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert (await wait_for(runtime, child.id, finished)).status is JobStatus.CANCELLED


@pytest.mark.timeout(120)
async def test_cancelling_a_child_fails_only_its_parents_node(shared_runtime: ServiceRuntime, tmp_path: Path):
    runtime = shared_runtime
    slow = {"name": "slow", "nodes": [record("sleep", tmp_path / "ledger", seconds=30)]}
    handled = calling(await create(runtime, slow))
    handled["nodes"][0]["on_error"] = "continue"
    workflow_id = await create(runtime, handled)
    parent = await runtime.controller.execute_workflow(workflow_id, {"n": 1}, owner="alice")
    await wait_for(runtime, parent.id, lambda job: bool(job.waiting_on))
    (child,) = await children(runtime, parent.id)
    await runtime.controller.cancel_job(child.id)
    done = await wait_for(runtime, parent.id, finished)
    assert done.status is JobStatus.COMPLETED and done.nodes["call"].status is NodeStatus.FAILED
    assert "cancelled" in (done.nodes["call"].error.message if done.nodes["call"].error else "")


@pytest.mark.timeout(120)
async def test_a_parent_killed_while_its_child_runs_never_starts_a_second_child(
    make_runtime: RuntimeFactory, tmp_path: Path
):
    runtime = await make_runtime(JOB_ACTOR_MODE="dedicated")
    ledger = tmp_path / "ledger"
    child_id = await create(runtime, {"name": "child", "nodes": [record("work", ledger, seconds=2)]})
    busy = record("busy", ledger, seconds=4)
    workflow_id = await create(runtime, calling(child_id, extra=[busy]))
    parent = await runtime.controller.execute_workflow(workflow_id, {"n": 1}, owner="alice")
    await wait_for(runtime, parent.id, lambda job: bool(job.waiting_on))
    os.kill(int((await (await job_actor(runtime, parent.id)).info())["pid"]), signal.SIGKILL)
    done = await wait_for(runtime, parent.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    assert len(await children(runtime, parent.id)) == 1
    starts = [line.split()[1] for line in ledger.read_text().splitlines() if line.split()[3] == "start"]
    assert starts.count("work") == 1, "the child ran once"


@pytest.mark.timeout(120)
async def test_a_workflow_calling_itself_stops_at_the_depth_limit_naming_the_chain(
    make_runtime: RuntimeFactory,
):
    runtime = await make_runtime(MAX_WORKFLOW_DEPTH=3)
    workflow_id = await create(runtime, DOUBLE)
    await runtime.store.update_workflow(workflow_id, WorkflowDefinition.model_validate(calling(workflow_id)))
    root = await wait_for(
        runtime,
        (await runtime.controller.execute_workflow(workflow_id, {"n": 1}, owner="alice")).id,
        finished,
    )
    assert root.status is JobStatus.FAILED
    deepest = root
    for _ in range(2):
        (deepest,) = await children(runtime, deepest.id)
    error = deepest.nodes["call"].error
    assert error is not None and "nest at most 3 deep" in error.message
    assert " -> ".join([workflow_id] * 4) in error.message
    assert await children(runtime, deepest.id) == []


@pytest.mark.timeout(120)
async def test_a_workflow_of_another_owner_is_not_found_when_the_node_runs(shared_runtime: ServiceRuntime):
    runtime = shared_runtime
    bobs = await create(runtime, DOUBLE, owner="bob")
    done = await run(runtime, calling(bobs), {"n": 1})
    assert done.status is JobStatus.FAILED
    error = done.nodes["call"].error
    assert error is not None and error.message == f"workflow {bobs} not found"
    assert await children(runtime, done.id) == []
