"""Waiting nodes on the job loop without Ray: real SQLite store, real Redis. A run that ends with every
remaining node waiting returns `running` (the job is suspended); a new runner resumes it from the store,
as the job manager does on any actor."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from actors.job_loop.job_runner import JobRunner, RunnerServices
from engine.dag import Dag
from engine.records import EventType, JobStatus, NodeStatus, SignalRecord
from tests.support.runner_jobs import definition, events_of, start_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def approval_flow(**approval: Any) -> Any:
    return definition(
        [
            {"id": "start", "type": "start"},
            {
                "id": "review",
                "type": "approval",
                "config": {"message": "publish {{input.title}}?", **approval},
            },
            {"id": "publish", "type": "transform", "config": {"template": "published"}},
            {"id": "discard", "type": "transform", "config": {"template": "discarded"}},
        ],
        [("start", "review"), ("review", "publish"), ("review", "discard")],
    )


async def signal(
    services: RunnerServices, job_id: str, name: str, payload: dict[str, Any], **kw: Any
) -> bool:
    record = SignalRecord(id=uuid.uuid4().hex, job_id=job_id, name=name, payload=payload, sender="bob", **kw)
    _, created = await services.store.put_signal(record)
    return created


async def resume(services: RunnerServices, job_id: str) -> JobRunner:
    job = await services.store.get_job(job_id)
    workflow = await services.store.get_workflow(job.workflow_id, job.workflow_version)
    return JobRunner(services, job, Dag.from_definition(workflow.definition))


async def test_an_approval_suspends_the_job_and_a_decision_resumes_it(services):
    runner = await start_job(
        services, approval_flow(approve_edge="publish", reject_edge="discard"), {"title": "the draft"}
    )
    assert await runner.run() is JobStatus.RUNNING
    job = await services.store.get_job(runner.job.id)
    assert job.status is JobStatus.RUNNING and job.waiting_on == ["review"]
    wait = job.nodes["review"].wait
    assert job.nodes["review"].status is NodeStatus.WAITING
    assert wait is not None and wait.kind == "approval" and wait.message == "publish the draft?"

    assert await signal(services, job.id, "review", {"approved": True, "comment": "ok", "data": {"n": 1}})
    suspended_version = job.version
    assert await (await resume(services, job.id)).run() is JobStatus.COMPLETED
    job = await services.store.get_job(job.id)
    assert job.version == suspended_version + 1, (
        "resumed: one commit ends the wait, runs the transform that follows (pure) and ends the job"
    )
    output = job.nodes["review"].output
    assert {k: output[k] for k in ("approved", "by", "comment", "data")} == {
        "approved": True,
        "by": "bob",
        "comment": "ok",
        "data": {"n": 1},
    }
    assert job.nodes["publish"].status is NodeStatus.COMPLETED
    assert job.nodes["discard"].status is NodeStatus.SKIPPED
    assert job.waiting_on == []
    types = [(e.type, e.node_id) for e in await events_of(services, job.id)]
    waiting = types.index((EventType.NODE_WAITING, "review"))
    received = types.index((EventType.SIGNAL_RECEIVED, "review"))
    assert waiting < received < types.index((EventType.NODE_COMPLETED, "review"))


async def test_a_rejection_takes_the_reject_edge(services):
    runner = await start_job(
        services, approval_flow(approve_edge="publish", reject_edge="discard"), {"title": "x"}
    )
    assert await runner.run() is JobStatus.RUNNING
    await signal(services, runner.job.id, "review", {"approved": False})
    assert await (await resume(services, runner.job.id)).run() is JobStatus.COMPLETED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["publish"].status is NodeStatus.SKIPPED
    assert job.nodes["discard"].output == "discarded"


async def test_a_rejection_without_a_reject_edge_fails_the_node(services):
    runner = await start_job(services, approval_flow(), {"title": "x"})
    assert await runner.run() is JobStatus.RUNNING
    await signal(services, runner.job.id, "review", {"approved": False, "comment": "too long"})
    assert await (await resume(services, runner.job.id)).run() is JobStatus.FAILED
    job = await services.store.get_job(runner.job.id)
    error = job.nodes["review"].error
    assert error is not None and error.type == "node_error" and error.message == "rejected by bob: too long"


async def test_a_signal_sent_before_its_wait_is_kept_and_taken_then(services):
    wf = definition(
        [
            {"id": "slow", "type": "sleep", "config": {"seconds": 0.2}},
            {"id": "hook", "type": "wait", "config": {"signal": "paid"}},
        ],
        [("slow", "hook")],
    )
    runner = await start_job(services, wf, {})
    await signal(services, runner.job.id, "paid", {"amount": 5})
    assert await runner.run() is JobStatus.COMPLETED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["hook"].output == {"amount": 5}


async def test_a_repeated_idempotency_key_stores_one_signal_and_each_wait_takes_one(services):
    wf = definition(
        [
            {"id": "first", "type": "wait", "config": {"signal": "tick"}},
            {"id": "second", "type": "wait", "config": {"signal": "tick"}},
        ],
        [("first", "second")],
    )
    runner = await start_job(services, wf, {})
    job_id = runner.job.id
    assert await signal(services, job_id, "tick", {"n": 1}, idempotency_key="k1")
    assert not await signal(services, job_id, "tick", {"n": 99}, idempotency_key="k1")
    assert len(await services.store.list_signals(job_id)) == 1
    assert await runner.run() is JobStatus.RUNNING
    job = await services.store.get_job(job_id)
    assert job.nodes["first"].output == {"n": 1} and job.waiting_on == ["second"]

    await signal(services, job_id, "tick", {"n": 2}, idempotency_key="k2")
    assert await (await resume(services, job_id)).run() is JobStatus.COMPLETED
    job = await services.store.get_job(job_id)
    assert job.nodes["second"].output == {"n": 2}
    taken = [job.nodes[n].wait.taken_signal for n in ("first", "second")]  # type: ignore[union-attr]
    assert len(set(taken)) == 2


@pytest.mark.parametrize(
    ("on_timeout", "status"), [("continue", JobStatus.COMPLETED), ("fail", JobStatus.FAILED)]
)
async def test_a_signal_wait_that_times_out(services, on_timeout, status):
    wf = definition(
        [
            {
                "id": "hook",
                "type": "wait",
                "config": {"signal": "s", "timeout_s": 0.2, "on_timeout": on_timeout},
            }
        ],
        [],
    )
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.RUNNING
    await asyncio.sleep(0.3)
    assert await (await resume(services, runner.job.id)).run() is status
    node = (await services.store.get_job(runner.job.id)).nodes["hook"]
    if on_timeout == "continue":
        assert node.status is NodeStatus.COMPLETED and node.output is None
    else:
        assert node.error is not None and node.error.type == "wait_timeout"


async def test_a_timer_fires_within_a_running_job_and_a_signal_reaches_a_running_runner(services):
    wf = definition(
        [
            {"id": "busy", "type": "sleep", "config": {"seconds": 1.0}},
            {"id": "nap", "type": "wait", "config": {"delay_s": 0.1}},
            {"id": "hook", "type": "wait", "config": {"signal": "go"}},
        ],
        [],
    )
    runner = await start_job(services, wf, {})
    run = asyncio.create_task(runner.run())
    assert await wait_until(lambda: runner.state.nodes["hook"].status is NodeStatus.WAITING, timeout_s=5)
    await signal(services, runner.job.id, "go", {"x": 1})
    runner.signals_arrived()
    assert await run is JobStatus.COMPLETED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["hook"].output == {"x": 1}
    assert isinstance(job.nodes["nap"].output, str)
    assert job.nodes["hook"].finished_at < job.nodes["busy"].finished_at  # type: ignore[operator]


async def test_cancelling_a_waiting_job_cancels_its_waits(services):
    runner = await start_job(services, approval_flow(), {"title": "x"})
    assert await runner.run() is JobStatus.RUNNING
    assert runner.cancel() is False, "a run that ended suspended takes no cancel; the manager cancels it"
    again = await resume(services, runner.job.id)
    run = asyncio.create_task(again.run())
    again.cancel()
    assert await run is JobStatus.CANCELLED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["review"].status is NodeStatus.CANCELLED and job.waiting_on == []
