"""A map over a sub-graph of nodes, run by the Ray-free job runner: real SQLite store and real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.records import JobStatus, NodeStatus
from tests.support.runner_jobs import SleepNode, definition, start_job
from tests.support.waiting import wait_until


def graph_map(items: Any, nodes: list[dict[str, Any]], edges: list[tuple[str, str]], **config: Any) -> dict:
    graph = {"nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}
    if "output" in config:
        graph["output"] = config.pop("output")
    return {"id": "fan", "type": "map", "config": {"items": items, "graph": graph, **config}}


def transform(node_id: str, template: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "config": {"template": template}}


async def fan_output(services: Any, runner: Any) -> Any:
    return (await services.store.get_job(runner.job.id)).nodes["fan"]


async def test_each_item_runs_the_sub_graph_with_branches_and_outer_values_in_input_order(services):
    route = {
        "id": "route",
        "type": "conditional",
        "config": {"condition": "{{double.output}} > 10", "true_edge": "big", "false_edge": "small"},
    }
    nodes = [
        transform("double", "{{item * 2}}"),
        route,
        transform(
            "big", {"size": "big", "n": "{{double.output}}", "tag": "{{prep.output}}", "i": "{{index}}"}
        ),
        transform("small", {"size": "small", "n": "{{double.output}}", "q": "{{input.q}}"}),
    ]
    edges = [("double", "route"), ("route", "big"), ("route", "small")]
    wf = definition(
        [transform("prep", "tag-{{input.q}}"), graph_map("{{input.items}}", nodes, edges, max_concurrency=4)],
        [("prep", "fan")],
    )
    runner = await start_job(services, wf, {"items": list(range(12)), "q": "x"})
    status = await runner.run()
    node = await fan_output(services, runner)
    assert status is JobStatus.COMPLETED, node.error
    expected = [
        {"big": {"size": "big", "n": n * 2, "tag": "tag-x", "i": n}}
        if n * 2 > 10
        else {"small": {"size": "small", "n": n * 2, "q": "x"}}
        for n in range(12)
    ]
    assert node.output["results"] == expected
    assert (node.output["succeeded"], node.output["failed"]) == (12, 0)


async def test_output_names_the_node_whose_output_is_the_items_result(services):
    nodes = [transform("a", "{{item}}!"), transform("b", "{{a.output}}?"), transform("c", "{{a.output}}#")]
    wf = definition([graph_map(["x", "y"], nodes, [("a", "b"), ("a", "c")], output="b")], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    assert (await fan_output(services, runner)).output["results"] == ["x!?", "y!?"]


async def test_an_end_node_shapes_the_items_result(services):
    nodes = [
        transform("a", "{{item}}"),
        {"id": "done", "type": "end", "config": {"output": {"value": "{{a.output}}", "at": "{{index}}"}}},
    ]
    wf = definition([graph_map(["p", "q"], nodes, [("a", "done")])], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    assert (await fan_output(services, runner)).output["results"] == [
        {"value": "p", "at": 0},
        {"value": "q", "at": 1},
    ]


async def test_retries_inside_the_sub_graph_get_keys_with_the_maps_attempt(services):
    flaky = {
        "id": "f",
        "type": "flaky",
        "config": {"failures": 1, "value": "{{item}}"},
        "retry": {"max_attempts": 2, "backoff": 0},
    }
    wf = definition([graph_map(["a", "b"], [flaky], [])], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    node = await fan_output(services, runner)
    assert node.output["results"] == [{"value": "a", "attempt": 2}, {"value": "b", "attempt": 2}]
    logs = (await services.store.list_logs(runner.job.id, limit=1000)).items
    keys = sorted(entry.data["key"] for entry in logs if entry.message == "flaky called")
    job_id = runner.job.id
    assert keys == [f"{job_id}:fan[{i}].f:1.{attempt}" for i in (0, 1) for attempt in (1, 2)]
    assert {entry.data["sub_node"] for entry in logs if entry.message == "flaky called"} == {"f"}


@pytest.mark.parametrize(
    ("policy", "status"),
    [("collect", JobStatus.COMPLETED), ("fail_fast", JobStatus.FAILED)],
)
async def test_a_failing_sub_node_fails_its_item_under_the_maps_policy(services, policy, status):
    nodes = [
        transform("a", "{{item}}"),
        {"id": "f", "type": "flaky", "config": {"failures": "{{a.output}}", "value": "ok"}},
    ]
    items = [0, 9, 0, 9, 0]
    wf = definition([graph_map(items, nodes, [("a", "f")], output="f", failure_policy=policy)], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is status
    node = await fan_output(services, runner)
    if status is JobStatus.COMPLETED:
        assert [e["index"] for e in node.output["errors"]] == [1, 3]
        assert "node 'f' failed: transient failure 1" in node.output["errors"][0]["error"]["message"]
        assert node.output["results"] == [
            {"value": "ok", "attempt": 1},
            None,
            {"value": "ok", "attempt": 1},
            None,
            {"value": "ok", "attempt": 1},
        ]
    else:
        assert node.error is not None
        assert "map node 'fan': item 1 failed: node 'f' failed" in node.error.message


async def test_on_error_continue_inside_the_sub_graph_keeps_the_item_going(services):
    nodes = [
        {"id": "f", "type": "flaky", "config": {"failures": 9}, "on_error": "continue"},
        transform("after", {"saw": "{{f.output.error.type}}"}),
    ]
    wf = definition([graph_map([1, 2], nodes, [("f", "after")])], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    assert (await fan_output(services, runner)).output["results"] == [
        {"saw": "node_transient_error"},
        {"saw": "node_transient_error"},
    ]


async def test_a_sub_node_timeout_is_reported_as_a_timeout(services):
    nodes = [{"id": "s", "type": "sleep", "config": {"seconds": 5}, "timeout_s": 0.05}]
    wf = definition([graph_map([1], nodes, [])], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.FAILED
    node = await fan_output(services, runner)
    assert node.error is not None and "node 's' timed out after 0.05 s" in node.error.message


async def test_cancel_stops_every_items_running_sub_node_within_moments(services):
    nodes = [{"id": "s", "type": "sleep", "config": {"seconds": 30}}, transform("after", "{{s.output}}")]
    wf = definition([graph_map(list(range(20)), nodes, [("s", "after")], max_concurrency=5)], [])
    for seen in (SleepNode.started, SleepNode.finished):
        for node_id in [node_id for node_id in seen if node_id.startswith("fan[")]:
            del seen[node_id]
    runner = await start_job(services, wf, {})
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: sum(node_id.startswith("fan[") for node_id in SleepNode.started) >= 5)
    runner.cancel()
    assert await asyncio.wait_for(task, timeout=2) is JobStatus.CANCELLED
    node = await fan_output(services, runner)
    assert node.status is NodeStatus.CANCELLED
    started = [node_id for node_id in SleepNode.started if node_id.startswith("fan[")]
    assert len(started) == 5  # max_concurrency items began their sub-graph; the rest never did
    assert not any(node_id.startswith("fan[") for node_id in SleepNode.finished)


async def test_a_sub_graph_reads_secrets_and_its_results_are_redacted(services):
    nodes = [transform("a", "{{item}}:{{secrets.api_key}}")]
    wf = definition([graph_map(["x"], nodes, [])], [])
    runner = await start_job(services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    assert (await fan_output(services, runner)).output["results"] == ["x:***"]
