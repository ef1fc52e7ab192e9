"""Durable steps through the job loop without Ray: real SQLite, real Redis; a run stopped mid-node (as
the job actor's death stops it) is resumed by a new runner from the store alone."""

from __future__ import annotations

import asyncio

import pytest

from actors.job_loop.job_runner import JobRunner
from engine.dag import Dag
from engine.records import EventType, JobStatus
from tests.support.runner_jobs import StepperNode, definition, events_of, start_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(30)


async def test_a_resumed_attempt_gets_its_steps_back_and_does_none_of_them_again(services):
    wf = definition(
        [{"id": "s", "type": "stepper", "config": {"steps": ["one", "two", "three"], "hold_after": "two"}}],
        [],
    )
    runner = await start_job(services, wf, {})
    task = asyncio.create_task(runner.run())
    job_id = runner.job.id

    async def two_stored() -> bool:
        node = (await services.store.get_job(job_id)).nodes.get("s")
        return node is not None and "two" in node.steps

    await wait_until(two_stored)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    stored = await services.store.get_job(job_id)
    assert stored.nodes["s"].steps == {
        "one": {"done": "one", "key": f"{job_id}:s:1:one"},
        "two": {"done": "two", "key": f"{job_id}:s:1:two"},
    }
    quick = wf.model_copy(deep=True)
    quick.nodes[0].config = {"steps": ["one", "two", "three"]}
    assert await JobRunner(services, stored, Dag.from_definition(quick)).run() is JobStatus.COMPLETED

    assert {name: StepperNode.work[f"{job_id}:{name}"] for name in ("one", "two", "three")} == {
        "one": 1,
        "two": 1,
        "three": 1,
    }
    done = await services.store.get_job(job_id)
    assert done.nodes["s"].attempts == 1
    assert [step["key"] for step in done.nodes["s"].output] == [
        f"{job_id}:s:1:{n}" for n in ("one", "two", "three")
    ]
    progress = [
        e.data["step"] for e in await events_of(services, job_id) if e.type == EventType.NODE_PROGRESS
    ]
    assert progress == ["one", "two", "three"], "each step's event is published with it, once"


async def test_a_step_too_large_fails_the_node_naming_the_step(services):
    wf = definition([{"id": "s", "type": "stepper", "config": {"steps": ["x" * 300]}}], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.FAILED
    error = (await services.store.get_job(runner.job.id)).nodes["s"].error
    assert error is not None and error.type == "node_error" and "a step key is" in error.message
