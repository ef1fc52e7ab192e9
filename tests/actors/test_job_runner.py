"""The job loop without Ray: real SQLite store, real Redis, the node types of tests/support/runner_jobs.py."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import pytest

from actors.job_loop.job_runner import JobRunner, RunnerServices
from engine.budget import MAX_VALUE_BYTES
from engine.dag import Dag
from engine.records import EventType, JobEvent, JobStatus, NodeStatus
from storage.protocols import EventBus, Store
from tests.support.runner_jobs import (
    CountedNode,
    FlakyNode,
    ProcessDied,
    SleepNode,
    definition,
    events_of,
    node_status,
    start_job,
)
from tests.support.waiting import wait_until


async def test_a_job_runs_to_completion_with_checkpoints_events_and_logs(services):
    wf = definition(
        [
            {"id": "start", "type": "start"},
            {
                "id": "shape",
                "type": "transform",
                "config": {"template": {"greeting": "hello {{input.name}}"}},
            },
            {
                "id": "route",
                "type": "conditional",
                "config": {"condition": "{{input.n}} > 10", "true_edge": "big", "false_edge": "small"},
            },
            {"id": "big", "type": "transform", "config": {"template": "big"}},
            {"id": "small", "type": "transform", "config": {"template": "small"}},
            {
                "id": "end",
                "type": "end",
                "config": {"output": {"msg": "{{shape.output.greeting}}", "size": "{{small.output}}"}},
            },
        ],
        [
            ("start", "shape"),
            ("shape", "route"),
            ("route", "big"),
            ("route", "small"),
            ("big", "end"),
            ("small", "end"),
        ],
    )
    runner = await start_job(services, wf, {"name": "Ada", "n": 3})
    assert await runner.run() is JobStatus.COMPLETED

    job = await services.store.get_job(runner.job.id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"msg": "hello Ada", "size": "small"}
    assert job.nodes["big"].status is NodeStatus.SKIPPED
    assert job.nodes["route"].output == {"result": False, "branch": "small"}
    assert job.started_at is not None and job.finished_at is not None

    events = await events_of(services, job.id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert job.event_sequence == len(events)
    assert events[0].type == EventType.JOB_STARTED and events[-1].type == EventType.JOB_COMPLETED
    assert (EventType.NODE_SKIPPED, "big") in [(e.type, e.node_id) for e in events]

    logs = await services.store.list_logs(job.id, limit=1000)
    assert logs.total == len(events)
    assert logs.items[0].message == "job: started"


async def test_retries_keep_the_attempt_and_idempotency_key(services):
    wf = definition(
        [
            {
                "id": "f",
                "type": "flaky",
                "config": {"failures": 2, "value": 7},
                "retry": {"max_attempts": 3, "backoff": 0.01},
            }
        ],
        [],
    )
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["f"].attempts == 3
    assert job.nodes["f"].output == {"value": 7, "attempt": 3}
    events = await events_of(services, job.id)
    assert [e.type for e in events].count(EventType.NODE_RETRYING) == 2
    logs = (await services.store.list_logs(job.id, limit=100)).items
    keys = [entry.data["key"] for entry in logs if entry.message == "flaky called"]
    assert keys == [f"{job.id}:f:1", f"{job.id}:f:2", f"{job.id}:f:3"]


async def test_a_timeout_is_reported_as_a_timeout(services):
    wf = definition([{"id": "slow", "type": "sleep", "config": {"seconds": 5}, "timeout_s": 0.1}], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.FAILED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["slow"].error is not None
    assert job.nodes["slow"].error.type == "node_timeout"
    assert "timed out after 0.1 s" in job.nodes["slow"].error.message
    assert job.error is not None and job.error.type == "node_timeout"


async def test_independent_branches_overlap_in_time(services):
    wf = definition(
        [
            {"id": "s", "type": "start"},
            {"id": "a", "type": "sleep", "config": {"seconds": 0.3}},
            {"id": "b", "type": "sleep", "config": {"seconds": 0.3}},
        ],
        [("s", "a"), ("s", "b")],
    )
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    assert (
        SleepNode.started["b"] < SleepNode.finished["a"] and SleepNode.started["a"] < SleepNode.finished["b"]
    )


async def test_cancel_stops_running_nodes_within_moments(services):
    wf = definition(
        [{"id": "slow", "type": "sleep", "config": {"seconds": 30}}, {"id": "after", "type": "start"}],
        [("slow", "after")],
    )
    runner = await start_job(services, wf, {})
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: node_status(services, runner.job.id, "slow", NodeStatus.RUNNING))
    runner.cancel()
    assert await asyncio.wait_for(task, timeout=2) is JobStatus.CANCELLED
    job = await services.store.get_job(runner.job.id)
    assert {n: c.status for n, c in job.nodes.items()} == {
        "slow": NodeStatus.CANCELLED,
        "after": NodeStatus.CANCELLED,
    }
    events = await events_of(services, job.id)
    assert events[-1].type == EventType.JOB_CANCELLED


async def test_resume_from_checkpoint_never_reruns_completed_nodes(services):
    wf = definition(
        [
            {"id": "a", "type": "flaky", "config": {"value": 1}},
            {"id": "b", "type": "flaky", "config": {"value": 2}},
            {"id": "c", "type": "sleep", "config": {"seconds": 30}},
        ],
        [("a", "b"), ("b", "c")],
    )
    runner = await start_job(services, wf, {})
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: node_status(services, runner.job.id, "c", NodeStatus.RUNNING))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stored = await services.store.get_job(runner.job.id)
    assert stored.nodes["c"].status is NodeStatus.RUNNING

    quick = wf.model_copy(deep=True)
    quick.nodes[2].config = {"seconds": 0.01}
    resumed = JobRunner(services, stored, Dag.from_definition(quick))
    assert await resumed.run() is JobStatus.COMPLETED
    assert (await services.store.get_job(stored.id)).nodes["c"].attempts == 1, (
        "in-flight node reran as attempt 1"
    )
    assert FlakyNode.calls[f"{stored.id}:a"] == 1 and FlakyNode.calls[f"{stored.id}:b"] == 1
    events = await events_of(services, stored.id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "sequence continues after resume"


class ActorDied(Exception):
    """Stands for the job actor's process dying: the run stops where it was."""


class RealRedisBusThatDiesOnce:
    """The real Redis bus, except that its first publish of a batch holding the chosen event publishes the
    events before it and then raises ActorDied, as if the process died with its pipeline half sent: after
    the store's checkpoint (checked), before the stream has the event."""

    def __init__(self, bus: EventBus, store: Store, event_type: EventType, node_id: str | None) -> None:
        self.bus, self.store = bus, store
        self.target = (event_type, node_id)
        self.lost: JobEvent | None = None

    async def publish_many(self, events: list[JobEvent]) -> list[str | None]:
        at = next((i for i, e in enumerate(events) if (e.type, e.node_id) == self.target), None)
        if self.lost is None and at is not None:
            self.lost = events[at]
            stored = await self.store.get_job(self.lost.job_id or "")
            assert stored.event_sequence >= self.lost.sequence, "the checkpoint came first"
            await self.bus.publish_many(events[:at])
            raise ActorDied(f"died publishing event {self.lost.sequence}")
        return await self.bus.publish_many(events)


@pytest.mark.parametrize(
    ("event_type", "node_id"),
    [
        (
            EventType.NODE_COMPLETED,
            "a",
        ),  # the first event of its commit: none of the commit's reached clients
        (EventType.NODE_STARTED, "b"),  # the second: the commit's first event was published, then death
        (EventType.JOB_COMPLETED, None),  # the last event of the job: the store says completed, clients wait
    ],
)
async def test_events_of_a_checkpoint_whose_publish_died_are_published_on_resume_exactly_once(
    services, event_type, node_id
):
    wf = definition(
        [
            {"id": "a", "type": "transform", "config": {"template": {"value": "{{input.x}}"}}},
            {"id": "b", "type": "transform", "config": {"template": "{{a.output.value}}!"}},
        ],
        [("a", "b")],
    )
    runner = await start_job(services, wf, {"x": "hi"})
    dying_bus = RealRedisBusThatDiesOnce(services.bus, services.store, event_type, node_id)
    first_run = JobRunner(replace(services, bus=dying_bus), runner.job, runner.dag)
    with pytest.raises(ActorDied):
        await first_run.run()
    stored = await services.store.get_job(runner.job.id)
    before = [e.sequence for e in await published_so_far(services, stored.id)]
    assert before == list(range(1, len(before) + 1)) and before[-1:] != [stored.event_sequence], (
        "the stream lacks events the store's checkpoint holds"
    )

    resumed = JobRunner(services, stored, runner.dag)
    assert await resumed.run() is JobStatus.COMPLETED
    job = await services.store.get_job(stored.id)
    events = await asyncio.wait_for(events_of(services, job.id), timeout=10)
    assert [e.sequence for e in events] == list(range(1, job.event_sequence + 1)), (
        "every event once, in order"
    )
    assert dying_bus.lost is not None
    assert events[dying_bus.lost.sequence - 1].model_dump(exclude={"id"}) == dying_bus.lost.model_dump(
        exclude={"id"}
    ), "the lost event itself, not a new one"
    assert events[-1].type == EventType.JOB_COMPLETED and events[-1].data["status"] == "completed"
    assert job.result == {"b": "hi!"}

    again = JobRunner(services, job, runner.dag)
    assert await again.run() is JobStatus.COMPLETED
    assert len(await events_of(services, job.id)) == len(events), "a finished job's outbox adds nothing twice"


async def published_so_far(services: RunnerServices, job_id: str) -> list[JobEvent]:
    """The job's stream as it stands, without waiting for an event that ends it."""
    received: list[JobEvent] = []

    async def collect() -> None:
        async for event in services.bus.subscribe(job_id):
            received.append(event)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), timeout=0.5)
    return received


@pytest.mark.parametrize("crash", ["between two folded nodes", "after their checkpoint"])
async def test_a_crash_around_folded_nodes_loses_nothing_and_publishes_nothing_twice(services, crash):
    """x (not pure) -> a, b (pure: folded into the commit of x's result) -> end. Dying while b is computed,
    after a was, leaves store and stream at the commit before (x running): none of the lost commit's events
    reached the stream, and the resumed job runs x again with the same idempotency key (as any node in
    flight at a crash) and computes a and b again. Dying after their checkpoint leaves its events in the
    outbox, and b is not computed again. Published twice would be one sequence number twice on the stream
    (the bus drops a sequence it has) or one node's completion under two: neither happens."""
    between = crash == "between two folded nodes"
    wf = definition(
        [
            {"id": "x", "type": "flaky", "config": {"value": 1}},
            {"id": "a", "type": "transform", "config": {"template": "{{x.output.value}}"}},
            {"id": "b", "type": "counted", "config": {"value": "{{a.output}}!", "die_once": between}},
            {"id": "end", "type": "end", "config": {"output": "{{b.output}}"}},
        ],
        [("x", "a"), ("a", "b"), ("b", "end")],
    )
    runner = await start_job(services, wf, {})
    bus = services.bus
    if not between:
        bus = RealRedisBusThatDiesOnce(services.bus, services.store, EventType.NODE_COMPLETED, "b")
    with pytest.raises(ProcessDied if between else ActorDied):
        await JobRunner(replace(services, bus=bus), runner.job, runner.dag).run()

    stored = await services.store.get_job(runner.job.id)
    seen = [(e.type, e.node_id) for e in await published_so_far(services, stored.id)]
    assert len(seen) <= stored.event_sequence, "the store is never behind an event a client saw"
    if between:
        assert stored.nodes["x"].status is NodeStatus.RUNNING and not {"a", "b"} & set(stored.nodes)
        assert len(seen) == stored.event_sequence and seen[-1] == (EventType.NODE_STARTED, "x")
    else:
        assert stored.status is JobStatus.COMPLETED and (EventType.NODE_COMPLETED, "b") not in seen

    assert await JobRunner(services, stored, runner.dag).run() is JobStatus.COMPLETED
    job = await services.store.get_job(stored.id)
    events = await asyncio.wait_for(events_of(services, job.id), timeout=10)
    assert [e.sequence for e in events] == list(range(1, job.event_sequence + 1)), "each sequence once"
    completions = [(e.type, e.node_id) for e in events if e.type == EventType.NODE_COMPLETED]
    assert completions == [(EventType.NODE_COMPLETED, node) for node in ("x", "a", "b", "end")]
    assert events[-1].type == EventType.JOB_COMPLETED and job.result == "1!"
    assert CountedNode.computed[f"{job.id}:b"] == (2 if between else 1)
    logs = (await services.store.list_logs(job.id, limit=100)).items
    keys = [entry.data["key"] for entry in logs if entry.message == "flaky called"]
    assert keys == [f"{job.id}:x:1"] * (2 if between else 1)


async def test_secrets_are_redacted_from_stored_outputs_events_and_results(services):
    wf = definition([{"id": "t", "type": "transform", "config": {"template": "key={{secrets.api_key}}"}}], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["t"].output == "key=***"
    assert job.result == {"t": "key=***"}
    events = await events_of(services, job.id)
    assert "sk-very-secret" not in "".join(e.model_dump_json() for e in events)


async def test_each_node_keeps_the_config_it_ran_with_rendered_with_secrets_masked(services):
    template = {"greeting": "Hello {{input.name}}", "auth": "Bearer {{secrets.api_key}}"}
    wf = definition(
        [
            {"id": "t", "type": "transform", "config": {"template": template}},
            {"id": "k", "type": "keyed", "config": {"key": "sk-literal-key", "note": "{{t.output.auth}}"}},
        ],
        [("t", "k")],
    )
    runner = await start_job(services, wf, {"name": "Ada"})
    assert await runner.run() is JobStatus.FAILED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["t"].rendered_config == {"template": {"greeting": "Hello Ada", "auth": "Bearer ***"}}
    assert job.nodes["k"].rendered_config == {"key": "**********", "note": "Bearer ***"}
    assert job.nodes["k"].error is not None and "refused" in job.nodes["k"].error.message
    stored = job.model_dump_json()
    assert "sk-very-secret" not in stored and "sk-literal-key" not in stored


async def test_a_failed_jobs_error_masks_the_secrets_its_node_error_repeats(services):
    wf = definition([{"id": "k", "type": "keyed", "config": {"key": "x", "note": "{{secrets.api_key}}"}}], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.FAILED
    job = await services.store.get_job(runner.job.id)
    assert job.error is not None and job.error.message == "node 'k' failed: ValueError: refused: ***"


async def test_a_large_rendered_config_is_kept_as_a_note_of_its_size(services):
    wf = definition([{"id": "t", "type": "transform", "config": {"template": "{{input.text}}"}}], [])
    runner = await start_job(services, wf, {"text": "x" * 20_000})
    assert await runner.run() is JobStatus.COMPLETED
    rendered = (await services.store.get_job(runner.job.id)).nodes["t"].rendered_config
    assert rendered["truncated"] is True and rendered["size"] > 20_000


async def test_template_error_fails_the_node_with_the_path(services):
    wf = definition([{"id": "t", "type": "transform", "config": {"template": "{{input.missing}}"}}], [])
    runner = await start_job(services, wf, {"present": 1})
    assert await runner.run() is JobStatus.FAILED
    job = await services.store.get_job(runner.job.id)
    assert job.nodes["t"].error is not None and job.nodes["t"].error.type == "template_error"
    assert "missing" in job.nodes["t"].error.message


async def test_a_condition_over_its_budget_fails_the_node_naming_node_and_field(services):
    condition = "[[[0]*9999]*9999]*999 == [[[0]*9999]*9999]*999"
    check = {"id": "check", "type": "conditional", "config": {"condition": condition}}
    check["config"].update(true_edge="yes", false_edge="no")
    ends = [{"id": name, "type": "transform", "config": {"template": name}} for name in ("yes", "no")]
    runner = await start_job(services, definition([check, *ends], [("check", "yes"), ("check", "no")]), {})
    assert await runner.run() is JobStatus.FAILED
    error = (await services.store.get_job(runner.job.id)).nodes["check"].error
    assert error is not None and error.type == "condition_error"
    assert error.message.startswith("node 'check' config.condition: condition "), error.message
    assert f"exceeds the template budget of {MAX_VALUE_BYTES} bytes" in error.message


@pytest.mark.parametrize("mode", ["node", "graph"])
async def test_the_items_of_a_map_share_one_budget(services, mode):
    """Each item's template alone fits the budget; a thousand of them do not, so a map cannot multiply it
    (with a sub-graph run in the job too: its items never wait, so they would hold the loop in a row)."""
    template = {"type": "transform", "config": {"template": "{{ input.nums | sum }}"}}
    if mode == "node":
        fan = map_node(list(range(1000)), template)
    else:
        graph = {"nodes": [{"id": "add", **template}]}
        fan = {"id": "fan", "type": "map", "config": {"items": list(range(1000)), "graph": graph}}
    runner = await start_job(services, definition([fan], []), {"nums": [1] * 5000})
    assert await runner.run() is JobStatus.FAILED
    error = (await services.store.get_job(runner.job.id)).nodes["fan"].error
    assert error is not None and "map node 'fan'" in error.message and "item " in error.message
    assert "config.template: template {{input.nums | sum}}: " in error.message
    assert "exceeds the template budget of" in error.message and "work units" in error.message


def map_node(items: Any, child: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {"id": "fan", "type": "map", "config": {"items": items, "node": child, **config}}


async def test_map_runs_a_node_per_item_in_input_order_with_progress_events(services):
    child = {
        "type": "transform",
        "config": {"template": {"n": "{{item.n}}", "i": "{{index}}", "q": "{{input.q}}"}},
    }
    wf = definition([map_node("{{input.items}}", child, max_concurrency=7)], [])
    items = [{"n": n * 10} for n in range(300)]
    runner = await start_job(services, wf, {"items": items, "q": "x"})
    assert await runner.run() is JobStatus.COMPLETED
    output = (await services.store.get_job(runner.job.id)).nodes["fan"].output
    assert output["results"] == [{"n": n * 10, "i": n, "q": "x"} for n in range(300)]
    assert (output["succeeded"], output["failed"], output["total"]) == (300, 0, 300)
    progress = [e for e in await events_of(services, runner.job.id) if e.type == EventType.NODE_PROGRESS]
    assert progress and progress[-1].data == {"succeeded": 300, "failed": 0, "total": 300}


@pytest.mark.parametrize(
    ("policy", "ratio", "status", "failed"),
    [
        ("collect", 1.0, JobStatus.COMPLETED, 3),
        ("min_success_ratio", 0.9, JobStatus.COMPLETED, 3),
        ("min_success_ratio", 0.99, JobStatus.FAILED, None),
        ("fail_fast", 1.0, JobStatus.FAILED, None),
    ],
)
async def test_map_failure_policies(services, policy, ratio, status, failed):
    child = {"type": "flaky", "config": {"failures": "{{item}}", "value": "{{index}}"}}
    items = [5 if index in (3, 17, 29) else 0 for index in range(40)]
    wf = definition([map_node(items, child, failure_policy=policy, min_success_ratio=ratio)], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is status
    node = (await services.store.get_job(runner.job.id)).nodes["fan"]
    if failed is None:
        assert node.error is not None and "map node 'fan'" in node.error.message
    else:
        assert node.output["failed"] == failed
        assert [e["index"] for e in node.output["errors"]] == [3, 17, 29]
        assert node.output["results"][3] is None and node.output["results"][4] == {"value": 4, "attempt": 1}


async def test_map_item_template_errors_name_the_item(services):
    child = {"type": "transform", "config": {"template": "{{item.missing}}"}}
    runner = await start_job(services, definition([map_node([{"a": 1}], child)], []), {})
    assert await runner.run() is JobStatus.FAILED
    node = (await services.store.get_job(runner.job.id)).nodes["fan"]
    assert node.error is not None and "item 0" in node.error.message and "missing" in node.error.message
