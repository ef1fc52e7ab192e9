"""A loop node through the job loop without Ray: real SQLite, real Redis; a run stopped mid-loop (as the
job actor's death stops it) is resumed by a new runner from the store alone, at the iteration it was on."""

from __future__ import annotations

import asyncio

import pytest

from actors.job_loop.job_runner import JobRunner
from engine.dag import Dag
from engine.records import EventType, JobStatus
from tests.support.runner_jobs import SleepNode, definition, events_of, start_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(30)


async def test_a_resumed_loop_goes_on_at_its_iteration_and_runs_no_finished_one_again(services):
    graph = {
        "nodes": [
            {"id": "nap", "type": "sleep", "config": {"seconds": 0.05}},
            {
                "id": "add",
                "type": "transform",
                "config": {"template": "{{iteration.state}}{{iteration.index}}"},
            },
        ],
        "edges": [{"source": "nap", "target": "add"}],
    }
    wf = definition(
        [{"id": "resumed", "type": "loop", "config": {"graph": graph, "state": "", "max_iterations": 6}}], []
    )
    runner = await start_job(services, wf, {})
    task = asyncio.create_task(runner.run())
    job_id = runner.job.id

    async def two_stored() -> bool:
        node = (await services.store.get_job(job_id)).nodes.get("resumed")
        return node is not None and len(node.steps) >= 2

    await wait_until(two_stored)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stored = await services.store.get_job(job_id)
    kept = sorted(step["index"] for step in stored.nodes["resumed"].steps.values())
    first_runs = {index: SleepNode.started[f"resumed[{index}].nap"] for index in kept}

    assert await JobRunner(services, stored, Dag.from_definition(wf)).run() is JobStatus.COMPLETED
    done = (await services.store.get_job(job_id)).nodes["resumed"]
    assert done.attempts == 1
    assert done.output == {
        "iterations": 6,
        "state": "012345",
        "outputs": ["0", "01", "012", "0123", "01234", "012345"],
        "stopped_by": "max_iterations",
    }
    assert {index: SleepNode.started[f"resumed[{index}].nap"] for index in kept} == first_runs, (
        "a checkpointed iteration did not run again"
    )
    indexes = [
        e.data["index"] for e in await events_of(services, job_id) if e.type == EventType.LOOP_ITERATION
    ]
    assert indexes == list(range(6)), "each iteration's event is published with its step, once"


@pytest.mark.parametrize(
    ("template", "error_type", "message"),
    [
        pytest.param(
            "{{ 'x' * 70000 }}", "step_too_large", "step 'iteration.0' holds", id="output-too-large-to-keep"
        ),
        pytest.param(
            "{{ iteration.state.missing }}", "node_error", "iteration 0 failed: ", id="iteration-fails"
        ),
    ],
)
async def test_a_loop_fails_naming_its_iteration(services, template, error_type, message):
    graph = {"nodes": [{"id": "a", "type": "transform", "config": {"template": template}}]}
    wf = definition([{"id": "lp", "type": "loop", "config": {"graph": graph}}], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.FAILED
    error = (await services.store.get_job(runner.job.id)).nodes["lp"].error
    assert error is not None and error.type == error_type and message in error.message, error
