"""A map of workflow items: validation, the wait its node starts, and table tests of the pure steps that
move that wait on (nodes/map_children.py): results in input order, the failure policies, the concurrency
cap, children that cannot start."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.child_waits import ChildItem, ChildrenWait
from engine.errors import NodeExecutionError
from engine.records import ErrorInfo, SignalRecord, WaitKind
from engine.templating import TemplateContext
from engine.waits import child_signal
from nodes.map import MapNode
from nodes.map_children import (
    decided,
    ended_children,
    progress,
    to_start,
    verdict,
    with_ended,
    with_started,
)
from tests.support.node_services import standalone_context, standalone_services


def children_of(total: int, cap: int, policy: str = "fail_fast", ratio: float = 1.0) -> ChildrenWait:
    items = [ChildItem(workflow_id="wf", input={"n": i}, key=f"j:m[{i}]:1") for i in range(total)]
    return ChildrenWait(items=items, max_concurrency=cap, failure_policy=policy, min_success_ratio=ratio)


def ended(child_id: str, status: str = "completed", result: Any = None) -> SignalRecord:
    error = None if status == "completed" else {"message": "boom"}
    return SignalRecord(
        id=f"s-{child_id}",
        job_id="j",
        name=child_signal(child_id),
        payload={"status": status, "result": result, "error": error},
        sender="workflow-service",
    )


def run_map(children: ChildrenWait, failing: set[int], seed: int) -> tuple[ChildrenWait, int, list[str]]:
    """Drive the steps as the job actor does, children ending in a random order: the final wait, the most
    children running at once, and the children cancelled at the end (those still running)."""
    rng = random.Random(seed)
    most = 0
    while True:
        while indexes := to_start(children):
            children = with_started(children, {i: f"c{i}" for i in indexes})
            most = max(most, len(children.running()))
        if decided(children):
            return children, most, children.running()
        child = rng.choice(children.running())
        index = int(child[1:])
        status = "failed" if index in failing else "completed"
        children = with_ended(children, ended_children([ended(child, status, {"n": index * 2})]))


@pytest.mark.parametrize("seed", range(5))
def test_results_come_in_input_order_whatever_order_the_children_end_in(seed: int):
    children, most, cancelled = run_map(children_of(12, 3), set(), seed)
    result = verdict(children, "m")
    assert result is not None and cancelled == []
    assert result.output == {
        "results": [{"n": i * 2} for i in range(12)],
        "succeeded": 12,
        "failed": 0,
        "total": 12,
        "errors": [],
    }
    assert most == 3


@pytest.mark.parametrize(("total", "cap"), [(50, 5), (3, 5), (7, 1), (10, 10)])
def test_no_more_than_max_concurrency_children_ever_run_at_once(total: int, cap: int):
    failing = {1, 4} & set(range(total))
    children, most, _ = run_map(children_of(total, cap, "collect"), failing, seed=total)
    assert most == min(cap, total)
    assert progress(children) == {"succeeded": total - len(failing), "failed": len(failing), "total": total}


def test_fail_fast_fails_at_the_first_failed_child_and_names_the_running_ones_to_cancel():
    children = with_started(children_of(6, 3), {0: "c0", 1: "c1", 2: "c2"})
    children = with_ended(children, ended_children([ended("c1", "failed")]))
    assert decided(children) and to_start(children) == []
    assert children.running() == ["c0", "c2"]
    with pytest.raises(NodeExecutionError, match=r"item 1 failed: child job c1 failed: boom"):
        verdict(children, "m")


def test_collect_runs_every_item_and_lists_the_failures():
    children, _, cancelled = run_map(children_of(5, 2, "collect"), {0, 3}, seed=1)
    result = verdict(children, "m")
    assert result is not None and cancelled == []
    assert result.output["results"] == [None, {"n": 2}, {"n": 4}, None, {"n": 8}]
    assert [(e["index"], e["error"]["message"]) for e in result.output["errors"]] == [
        (0, "child job c0 failed: boom"),
        (3, "child job c3 failed: boom"),
    ]


@pytest.mark.parametrize(("ratio", "passes"), [(0.6, True), (0.8, False)])
def test_min_success_ratio_fails_the_node_below_the_ratio(ratio: float, passes: bool):
    children, _, _ = run_map(children_of(5, 2, "min_success_ratio", ratio), {0, 3}, seed=2)
    if passes:
        result = verdict(children, "m")
        assert result is not None and result.output["succeeded"] == 3
    else:
        with pytest.raises(NodeExecutionError, match="3 of 5 items succeeded"):
            verdict(children, "m")


def test_a_cancelled_child_fails_its_item_and_a_signal_of_another_child_changes_nothing():
    children = with_started(children_of(2, 2, "collect"), {0: "c0", 1: "c1"})
    assert with_ended(children, ended_children([ended("someone-else")])) == children
    children = with_ended(children, ended_children([ended("c0", "cancelled")]))
    assert children.items[0].status == "cancelled" and children.running() == ["c1"]
    assert not decided(children) and verdict(children, "m") is None


def test_an_item_whose_child_cannot_start_fails_and_frees_its_slot():
    children = children_of(3, 1, "collect")
    assert to_start(children) == [0]
    children = with_started(children, {0: ErrorInfo(type="node_error", message="workflow wf not found")})
    assert to_start(children) == [1], "the failed start held no slot"
    assert progress(children) == {"succeeded": 0, "failed": 1, "total": 3}


def test_a_map_of_workflow_items_is_valid_and_of_approvals_or_waits_is_not():
    map_node = MapNode()
    workflow_child = {"type": "workflow", "config": {"workflow_id": "wf", "input": {"n": "{{item}}"}}}
    assert map_node.validate_config({"items": "{{input.xs}}", "node": workflow_child}) == []
    for waiting in ({"type": "approval", "config": {}}, {"type": "wait", "config": {"signal": "go"}}):
        problems = map_node.validate_config({"items": [1], "node": waiting})
        assert [p.field for p in problems] == ["config.node.type"]
    graph = {"nodes": [{"id": "call", **workflow_child}]}
    problems = map_node.validate_config({"items": [1], "graph": graph})
    assert "config.graph.nodes.call.type" in [p.field for p in problems], "not inside a sub-graph"


async def test_the_map_node_waits_for_its_children_one_idempotency_key_per_item(services_with_children):
    config = MapNode().render_config(
        {
            "items": ["a", "b"],
            "max_concurrency": 4,
            "failure_policy": "collect",
            "node": {"type": "workflow", "config": {"workflow_id": "wf", "input": {"x": "{{item}}"}}},
        },
        TemplateContext(),
        "m",
    )
    ctx = standalone_context(TemplateContext(), "m", attempt=2, services=services_with_children)
    result = await MapNode().execute(config, ctx)
    assert result.wait is not None and result.wait.kind is WaitKind.CHILDREN
    children = ChildrenWait.of(result.wait)
    assert [(i.input, i.key, i.child_job_id) for i in children.items] == [
        ({"x": "a"}, "j:m[0]:2", None),
        ({"x": "b"}, "j:m[1]:2", None),
    ]
    assert (children.max_concurrency, children.failure_policy) == (4, "collect")


@pytest.fixture
def services_with_children() -> Any:
    class Starter:
        async def start(self, *args: Any) -> Any:
            raise AssertionError("the map node starts no child itself")

        async def cancel(self, job_id: str) -> None:
            raise AssertionError("nor cancels one")

    return standalone_services(child_jobs=Starter())
