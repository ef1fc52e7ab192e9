"""A map of workflow items on the job loop without Ray (real SQLite store, real Redis), its children
started by a stand-in for the job manager: the job suspends while children run, each ended child's signal
resumes it to start the next, never more than max_concurrency at once; fail_fast cancels the rest."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from actors.job_loop.job_runner import JobRunner, RunnerServices
from engine.child_waits import ChildrenWait
from engine.dag import Dag
from engine.records import EventType, JobRecord, JobStatus, NodeStatus, SignalRecord
from engine.waits import child_signal
from tests.support.runner_jobs import definition, events_of, start_job

pytestmark = pytest.mark.timeout(60)

DONE = "completed"


class Children:
    """Starts a child per idempotency key (the same one again for a key seen before), and cancels."""

    def __init__(self) -> None:
        self.by_key: dict[str, JobRecord] = {}
        self.starts: list[str] = []
        self.cancelled: list[str] = []

    async def start(
        self, workflow_id: str, version: int | None, input_data: dict[str, Any], node_id: str, key: str
    ) -> JobRecord:
        self.starts.append(key)
        if key not in self.by_key:
            child_id = f"child-{len(self.by_key)}"
            self.by_key[key] = JobRecord(
                id=child_id, owner="alice", workflow_id=workflow_id, workflow_version=1, input=input_data
            )
        return self.by_key[key]

    async def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


def mapping(policy: str, items: int = 5, cap: int = 2) -> Any:
    return definition(
        [
            {
                "id": "fan",
                "type": "map",
                "config": {
                    "items": list(range(items)),
                    "max_concurrency": cap,
                    "failure_policy": policy,
                    "node": {"type": "workflow", "config": {"workflow_id": "wf", "input": {"n": "{{item}}"}}},
                },
            },
            {"id": "after", "type": "transform", "config": {"template": "{{fan.output.succeeded}}"}},
        ],
        [("fan", "after")],
    )


async def end_child(
    services: RunnerServices, job_id: str, child: JobRecord, status: str = "completed"
) -> None:
    payload = {"status": status, "result": {"doubled": child.input["n"] * 2}, "error": None}
    if status != "completed":
        payload = {"status": status, "result": None, "error": {"message": "boom"}}
    await services.store.put_signal(
        SignalRecord(
            id=uuid.uuid4().hex,
            job_id=job_id,
            name=child_signal(child.id),
            payload=payload,
            sender="workflow-service",
            idempotency_key=f"ended:{child.id}",
        )
    )


async def resume(services: RunnerServices, job_id: str) -> JobRunner:
    job = await services.store.get_job(job_id)
    workflow = await services.store.get_workflow(job.workflow_id, job.workflow_version)
    return JobRunner(services, job, Dag.from_definition(workflow.definition))


async def running_children(services: RunnerServices, job_id: str) -> list[str]:
    wait = (await services.store.get_job(job_id)).nodes["fan"].wait
    assert wait is not None
    return ChildrenWait.of(wait).running()


async def test_children_run_max_concurrency_at_a_time_and_results_come_in_input_order(services):
    children = Children()
    services = replace(services, child_jobs=children)
    runner = await start_job(services, mapping("collect"), {})
    job_id = runner.job.id
    assert await runner.run() is JobStatus.RUNNING, "suspended while its children run"
    assert await running_children(services, job_id) == ["child-0", "child-1"]
    by_id = {child.id: child for child in children.by_key.values()}
    status = JobStatus.RUNNING
    while status is JobStatus.RUNNING:
        running = await running_children(services, job_id)
        assert 1 <= len(running) <= 2
        await end_child(services, job_id, by_id[running[-1]])
        status = await (await resume(services, job_id)).run()
        by_id = {child.id: child for child in children.by_key.values()}
    job = await services.store.get_job(job_id)
    assert status is JobStatus.COMPLETED, job.error
    assert job.nodes["fan"].output["results"] == [{"doubled": n * 2} for n in range(5)]
    assert job.nodes["after"].output == 5
    assert sorted(children.starts) == sorted(set(children.starts)), "no item was started twice"
    assert [key.rsplit(":", 2)[1] for key in children.starts] == sorted(f"fan[{i}]" for i in range(5)), (
        "started in input order, each with its item's key"
    )
    types = [e.type for e in await events_of(services, job_id) if e.node_id == "fan"]
    assert types.count(EventType.CHILD_JOB_STARTED) == 5 and types.count(EventType.CHILD_JOB_FINISHED) == 5
    progress = [e.data for e in await events_of(services, job_id) if e.type == EventType.NODE_PROGRESS]
    assert progress[-1] == {"succeeded": 5, "failed": 0, "total": 5}


async def test_a_resumed_job_with_nothing_new_starts_no_child_again(services):
    children = Children()
    services = replace(services, child_jobs=children)
    runner = await start_job(services, mapping("collect"), {})
    assert await runner.run() is JobStatus.RUNNING
    version = (await services.store.get_job(runner.job.id)).version
    assert await (await resume(services, runner.job.id)).run() is JobStatus.RUNNING
    assert len(children.starts) == 2 and (await services.store.get_job(runner.job.id)).version == version + 1


async def test_fail_fast_fails_the_node_at_the_first_failed_child_and_cancels_the_others(services):
    children = Children()
    services = replace(services, child_jobs=children)
    runner = await start_job(services, mapping("fail_fast", items=6, cap=3), {})
    assert await runner.run() is JobStatus.RUNNING
    first = children.by_key[children.starts[0]]
    await end_child(services, runner.job.id, first, "failed")
    assert await (await resume(services, runner.job.id)).run() is JobStatus.FAILED
    job = await services.store.get_job(runner.job.id)
    node = job.nodes["fan"]
    assert node.status is NodeStatus.FAILED and node.error is not None
    assert "item 0 failed: child job child-0 failed: boom" in node.error.message
    assert sorted(children.cancelled) == ["child-1", "child-2"]
    assert len(children.starts) == 3, "no item started after the failure"


async def test_a_child_that_ended_before_its_start_was_recorded_counts_as_ended(services):
    """As after a crash between starting a child and storing its id: starting it again gives the ended
    child, whose end its record says, so the map neither waits for a signal taken by nobody nor stalls."""
    children = Children()
    services = replace(services, child_jobs=children)
    runner = await start_job(services, mapping("collect", items=2, cap=1), {})
    children.by_key[f"{runner.job.id}:fan[0]:1"] = JobRecord(
        id="early",
        owner="alice",
        workflow_id="wf",
        workflow_version=1,
        status=JobStatus.COMPLETED,
        result={"doubled": 0},
    )
    assert await runner.run() is JobStatus.RUNNING
    assert await running_children(services, runner.job.id) == ["child-1"], "the next item started at once"
    await end_child(services, runner.job.id, children.by_key[f"{runner.job.id}:fan[1]:1"])
    assert await (await resume(services, runner.job.id)).run() is JobStatus.COMPLETED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["fan"].output["results"] == [{"doubled": 0}, {"doubled": 2}]
