"""A map of workflow items on a real local Ray: one child job per item, at most max_concurrency at a time,
under admission limits smaller than that (the waiting parent holds no slot); fail_fast cancels the running
children; a parent actor killed -9 mid-map starts no item's child twice."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from actors.ray_runtime.bootstrap import ServiceRuntime
from engine.records import JobRecord, JobStatus, NodeStatus
from tests.actors.test_ray_children import DOUBLE, children, create
from tests.support.ray_jobs import RuntimeFactory, finished, job_actor, record, wait_for

pytestmark = pytest.mark.slow


def mapping(
    workflow_id: str,
    items: list[Any],
    cap: int,
    policy: str = "fail_fast",
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": "fan-out",
        "nodes": [
            {
                "id": "fan",
                "type": "map",
                "config": {
                    "items": items,
                    "max_concurrency": cap,
                    "failure_policy": policy,
                    "node": {
                        "type": "workflow",
                        "config": {"workflow_id": workflow_id, "input": {"n": "{{item}}"}},
                    },
                },
            },
            *(extra or []),
        ],
    }


async def start(runtime: ServiceRuntime, definition: dict[str, Any]) -> JobRecord:
    workflow_id = await create(runtime, definition)
    return await runtime.controller.execute_workflow(workflow_id, {}, owner="alice")


def most_at_once(jobs: list[JobRecord]) -> int:
    """The most children that were started (submitted) and not yet finished at one time."""
    moments: list[tuple[datetime, int]] = []
    for job in jobs:
        assert job.finished_at is not None
        moments += [(job.created_at, 1), (job.finished_at, -1)]
    most = now = 0
    for _, change in sorted(moments, key=lambda moment: (moment[0], moment[1])):
        now += change
        most = max(most, now)
    return most


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    ("items", "active", "mode"), [(50, 2, "reuse"), (4, 1, "dedicated")], ids=["50-2-reuse", "4-1-dedicated"]
)
async def test_a_map_of_children_runs_them_all_five_at_a_time_under_a_smaller_admission_limit(
    make_runtime: RuntimeFactory, items: int, active: int, mode: str
):
    """Fifty children on warm runners, and a few each on an actor of its own (a second each to start)."""
    runtime = await make_runtime(MAX_ACTIVE_JOBS=active, JOB_ACTOR_MODE=mode)
    parent = await start(runtime, mapping(await create(runtime, DOUBLE), list(range(items)), cap=5))
    done = await wait_for(runtime, parent.id, finished, timeout_s=360)
    assert done.status is JobStatus.COMPLETED, done.error
    output = done.nodes["fan"].output
    assert output["results"] == [{"twice": {"n": 2 * n}} for n in range(items)], "in input order"
    assert (output["succeeded"], output["failed"], output["total"]) == (items, 0, items)
    started = await children(runtime, parent.id)
    assert len(started) == items and all(child.status is JobStatus.COMPLETED for child in started)
    assert 2 <= most_at_once(started) <= 5


@pytest.mark.timeout(120)
async def test_fail_fast_fails_the_map_at_the_first_failed_child_and_cancels_the_rest(
    shared_runtime: ServiceRuntime, tmp_path: Path
):
    runtime = shared_runtime
    slow = await create(
        runtime, {"name": "slow", "nodes": [record("sleep", tmp_path / "ledger", seconds=30)]}
    )
    failing = await create(
        runtime,
        {"name": "fails", "nodes": [{"id": "boom", "type": "transform", "config": {"template": "{{x.y}}"}}]},
    )
    definition = mapping("{{item.wf}}", [{"wf": slow}, {"wf": slow}, {"wf": failing}, {"wf": slow}], cap=3)
    definition["nodes"][0]["config"]["node"]["config"]["input"] = {}
    parent = await start(runtime, definition)
    done = await wait_for(runtime, parent.id, finished, timeout_s=90)
    assert done.status is JobStatus.FAILED
    node = done.nodes["fan"]
    assert (
        node.status is NodeStatus.FAILED and node.error is not None and "item 2 failed" in node.error.message
    )
    started = await children(runtime, parent.id)
    assert len(started) == 3, "the fourth item never started"
    for child in started:
        ended = await wait_for(runtime, child.id, finished)
        expected = JobStatus.FAILED if child.workflow_id == failing else JobStatus.CANCELLED
        assert ended.status is expected


@pytest.mark.timeout(300)
async def test_a_parent_killed_mid_map_starts_no_items_child_twice(
    make_runtime: RuntimeFactory, tmp_path: Path
):
    runtime = await make_runtime()
    ledger = tmp_path / "ledger"
    child_id = await create(runtime, {"name": "child", "nodes": [record("work", ledger, seconds=0.5)]})
    busy = record("busy", ledger, seconds=8)
    parent = await start(runtime, mapping(child_id, list(range(12)), cap=3, extra=[busy]))
    await wait_for(runtime, parent.id, lambda job: bool(job.waiting_on))
    while len(await children(runtime, parent.id)) < 4:
        assert not (await runtime.controller.get_job_status(parent.id)).status.is_terminal
        await asyncio.sleep(0.05)
    os.kill(int((await (await job_actor(runtime, parent.id)).info())["pid"]), signal.SIGKILL)
    done = await wait_for(runtime, parent.id, finished, timeout_s=240)
    assert done.status is JobStatus.COMPLETED, done.error
    started = await children(runtime, parent.id)
    per_item = sorted(child.input["n"] for child in started)
    assert per_item == list(range(12)), "exactly one child per item"
    assert all((child.idempotency_key or "").endswith(":1") for child in started), "all of attempt 1"
    assert all("work" in result for result in done.nodes["fan"].output["results"])
