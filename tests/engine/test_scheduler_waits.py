"""Table tests of the pure scheduling step's waits, and of engine/waits.py's reading of checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.child_waits import ChildItem, ChildrenWait
from engine.dag import Dag
from engine.models import WorkflowDefinition
from engine.records import (
    ErrorInfo,
    EventType,
    JobStatus,
    NodeCheckpoint,
    NodeStatus,
    SignalRecord,
    WaitInfo,
    WaitKind,
)
from engine.scheduler import (
    Begin,
    CancelNodes,
    CancelRequested,
    JobState,
    NodeSucceeded,
    NodeWaits,
    RunNode,
    WaitAdvanced,
    WaitEnded,
    WatchWait,
    apply,
    step,
)
from engine.waits import (
    awaited_children,
    child_job_ids,
    child_signal,
    children_signals,
    is_suspended,
    should_resume,
    signals_to_take,
    taken_signal_ids,
    wake_at,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dag_of(edges: list[tuple[str, str]], *waiting: str) -> Dag:
    ids = sorted({n for edge in edges for n in edge} | set(waiting))
    nodes = [{"id": n, "type": "wait" if n in waiting else "transform"} for n in ids]
    definition = WorkflowDefinition.model_validate(
        {"name": "t", "nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}
    )
    return Dag.from_definition(definition)


def wait(signal: str | None = "go", deadline_s: float | None = None, since_s: float = 0) -> WaitInfo:
    since = T0 + timedelta(seconds=since_s)
    deadline = None if deadline_s is None else T0 + timedelta(seconds=deadline_s)
    return WaitInfo(kind=WaitKind.SIGNAL, signal=signal, since=since, deadline=deadline)


def signal(name: str = "go", at_s: float = 0, sid: str | None = None) -> SignalRecord:
    return SignalRecord(
        id=sid or f"{name}@{at_s}",
        job_id="j",
        name=name,
        sender="bob",
        created_at=T0 + timedelta(seconds=at_s),
    )


def run_until_waiting(dag: Dag, node_id: str, info: WaitInfo) -> JobState:
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    for other in [n for n in dag.predecessors[node_id]]:
        apply(state, step(dag, state, NodeSucceeded(other, None, T0)))
    apply(state, step(dag, state, NodeWaits(node_id, info, T0)))
    return state


def test_a_running_node_that_waits_keeps_its_wait_and_is_watched():
    dag = dag_of([("a", "w")], "w")
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    apply(state, step(dag, state, NodeSucceeded("a", 1, T0)))
    info = wait(deadline_s=5)
    decision = step(dag, state, NodeWaits("w", info, T0))
    assert decision.changes["w"].status is NodeStatus.WAITING and decision.changes["w"].wait == info
    assert decision.actions == [WatchWait("w", info.deadline)]
    assert [(e.type, e.data["signal"]) for e in decision.events] == [(EventType.NODE_WAITING, "go")]
    apply(state, decision)
    assert state.unfinished == 1 and state.status is JobStatus.RUNNING


@pytest.mark.parametrize(
    ("ended", "status", "taken", "events"),
    [
        (
            WaitEnded("w", T0, {"x": 1}, signal=signal()),
            NodeStatus.COMPLETED,
            "go@0",
            [EventType.SIGNAL_RECEIVED, EventType.NODE_COMPLETED, EventType.NODE_STARTED],
        ),
        (
            WaitEnded("w", T0, None),
            NodeStatus.COMPLETED,
            None,
            [EventType.NODE_COMPLETED, EventType.NODE_STARTED],
        ),
        (
            WaitEnded("w", T0, error=ErrorInfo(type="wait_timeout", message="late")),
            NodeStatus.FAILED,
            None,
            [EventType.NODE_FAILED, EventType.JOB_FAILED],
        ),
    ],
    ids=["signal", "timer", "timeout-fails"],
)
def test_a_wait_ends_once_by_signal_timer_or_failure(
    ended: WaitEnded, status: NodeStatus, taken: Any, events
):
    dag = dag_of([("w", "b")], "w")
    state = run_until_waiting(dag, "w", wait())
    decision = step(dag, state, ended)
    node = decision.changes["w"]
    assert node.status is status and node.wait is not None and node.wait.taken_signal == taken
    assert [e.type for e in decision.events] == events
    apply(state, decision)
    assert step(dag, state, WaitEnded("w", T0, "again")).is_empty, "a second end finds no wait"


def test_a_wait_that_resumes_its_node_runs_the_same_attempt_again_with_the_steps_added():
    dag = dag_of([("w", "b")], "w")
    state = run_until_waiting(dag, "w", wait())
    state.nodes["w"] = state.nodes["w"].model_copy(update={"steps": {"turn-0": {"text": ""}}})
    decision = step(dag, state, WaitEnded("w", T0, signal=signal(), resume_steps={"turn-0.arrival": 1}))
    node = decision.changes["w"]
    assert node.status is NodeStatus.RUNNING and node.attempts == 1
    assert node.steps == {"turn-0": {"text": ""}, "turn-0.arrival": 1}
    assert node.wait is not None and node.wait.taken_signal == "go@0", "the signal it took stays taken"
    assert decision.actions == [RunNode("w", 1)]
    assert [(e.type, e.data) for e in decision.events] == [
        (EventType.SIGNAL_RECEIVED, {"signal": "go", "signal_id": "go@0", "by": "bob"}),
        (EventType.NODE_STARTED, {"attempt": 1, "resumed": True}),
    ]
    apply(state, decision)
    assert (
        state.status is JobStatus.RUNNING
        and state.unfinished == 2
        and not is_suspended(state.status, state.nodes)
    )
    again = step(dag, state, NodeWaits("w", wait(), T0)).changes["w"]
    assert again.wait is not None and again.wait.taken_signals == ["go@0"], (
        "its next wait keeps the signals its earlier waits took, so none is taken twice"
    )
    assert taken_signal_ids([again]) == {"go@0"}


def test_a_job_with_a_waiting_node_stays_running_and_cancel_stops_the_wait():
    dag = dag_of([("w", "b")], "w")
    state = run_until_waiting(dag, "w", wait())
    assert step(dag, state, Begin(T0)).actions == [WatchWait("w", None)], "a resumed job watches its wait"
    decision = step(dag, state, CancelRequested(T0))
    assert CancelNodes(("w",)) in decision.actions
    assert decision.changes["w"].status is NodeStatus.CANCELLED and decision.status is JobStatus.CANCELLED


def waiting_node(node_id: str, info: WaitInfo) -> NodeCheckpoint:
    return NodeCheckpoint(node_id=node_id, node_type="wait", status=NodeStatus.WAITING, wait=info)


@pytest.mark.parametrize(
    ("others", "suspended"),
    [
        ({}, True),
        ({"p": NodeStatus.PENDING, "c": NodeStatus.COMPLETED}, True),
        ({"r": NodeStatus.RUNNING}, False),
        ({"r": NodeStatus.RETRYING}, False),
    ],
)
def test_a_job_is_suspended_when_every_node_left_waits(others: dict[str, NodeStatus], suspended: bool):
    nodes = {"w": waiting_node("w", wait())}
    nodes.update({n: NodeCheckpoint(node_id=n, node_type="transform", status=s) for n, s in others.items()})
    assert is_suspended(JobStatus.RUNNING, nodes) is suspended
    assert not is_suspended(JobStatus.CANCELLED, nodes)


def test_the_wake_time_is_the_earliest_deadline():
    nodes = {
        "a": waiting_node("a", wait(deadline_s=30)),
        "b": waiting_node("b", wait(deadline_s=10)),
        "c": waiting_node("c", wait(deadline_s=None)),
    }
    assert wake_at(nodes) == T0 + timedelta(seconds=10)
    assert wake_at({"c": nodes["c"]}) is None


def test_each_wait_takes_the_oldest_untaken_signal_of_its_name():
    taken = waiting_node("done", wait()).model_copy(
        update={"status": NodeStatus.COMPLETED, "wait": wait().model_copy(update={"taken_signal": "s1"})}
    )
    nodes = {
        "done": taken,
        "first": waiting_node("first", wait("go", since_s=1)),
        "second": waiting_node("second", wait("go", since_s=2)),
        "other": waiting_node("other", wait("stop", since_s=3)),
    }
    signals = [
        signal(sid="s1", at_s=0),
        signal(sid="s3", at_s=3),
        signal(sid="s2", at_s=2),
        signal("nope", 1),
    ]
    assert [(n, s.id) for n, s in signals_to_take(nodes, signals)] == [("first", "s2"), ("second", "s3")]
    assert [(n, s.id) for n, s in signals_to_take(nodes, signals, claimed={"s2"})] == [("first", "s3")]


def children_wait(*child_ids: str | None) -> WaitInfo:
    items = [
        ChildItem(workflow_id="wf", key=f"j:w[{i}]:1", child_job_id=child)
        for i, child in enumerate(child_ids)
    ]
    children = ChildrenWait(items=items, max_concurrency=2, failure_policy="collect")
    return WaitInfo(kind=WaitKind.CHILDREN, since=T0, settings=children.model_dump(mode="json"))


def child_ended(child_id: str, sid: str) -> SignalRecord:
    return SignalRecord(
        id=sid, job_id="j", name=child_signal(child_id), payload={"status": "completed"}, sender="ws"
    )


def test_a_wait_that_advances_stays_waiting_records_the_signals_it_took_and_says_what_moved():
    dag = dag_of([("w", "b")], "w")
    state = run_until_waiting(dag, "w", children_wait(None, None, None))
    first = step(dag, state, WaitAdvanced("w", children_wait("c0", "c1", None), T0, started=("c0", "c1")))
    apply(state, first)
    assert [(e.type, e.data) for e in first.events] == [
        (EventType.CHILD_JOB_STARTED, {"child_job_id": "c0"}),
        (EventType.CHILD_JOB_STARTED, {"child_job_id": "c1"}),
    ]
    progress = {"succeeded": 1, "failed": 0, "total": 3}
    second = step(
        dag,
        state,
        WaitAdvanced("w", children_wait("c0", "c1", "c2"), T0, (child_ended("c0", "s0"),), ("c2",), progress),
    )
    apply(state, second)
    node = state.nodes["w"]
    assert node.status is NodeStatus.WAITING and node.wait is not None
    assert node.wait.taken_signals == ["s0"] and awaited_children(node.wait) == ["c0", "c1", "c2"]
    assert [(e.type, e.data) for e in second.events] == [
        (EventType.CHILD_JOB_FINISHED, {"child_job_id": "c0", "status": "completed"}),
        (EventType.CHILD_JOB_STARTED, {"child_job_id": "c2"}),
        (EventType.NODE_PROGRESS, progress),
    ]
    assert state.unfinished == 2 and is_suspended(JobStatus.RUNNING, state.nodes)


def test_the_signals_a_map_of_children_takes_are_its_running_childrens_untaken_ones():
    dag = dag_of([("w", "b")], "w")
    state = run_until_waiting(dag, "w", children_wait("c0", "c1"))
    signals = [child_ended("c0", "s0"), child_ended("c1", "s1"), child_ended("other", "s2"), signal()]
    assert children_signals(state.nodes, signals) == {"w": signals[:2]}
    assert should_resume(state.nodes, signals[2:3]) is False, "both children run: none to start"
    apply(state, step(dag, state, WaitAdvanced("w", children_wait("c0", "c1"), T0, (signals[0],))))
    assert taken_signal_ids(state.nodes.values()) == {"s0"}
    assert children_signals(state.nodes, signals) == {"w": [signals[1]]}
    assert should_resume(state.nodes, signals)
    assert signals_to_take(state.nodes, signals) == [], "no single wait takes a child's signal"
    unstarted = run_until_waiting(dag, "w", children_wait("c0", None))
    assert should_resume(unstarted.nodes, []), "an item waits to start and a slot is free"


def test_a_retried_map_of_children_keeps_the_children_its_earlier_attempt_started():
    dag = dag_of([("w", "b")], "w")
    state = run_until_waiting(dag, "w", children_wait("c0", "c1"))
    running = state.nodes["w"].model_copy(update={"status": NodeStatus.RUNNING})
    state.nodes["w"] = running
    apply(state, step(dag, state, NodeWaits("w", children_wait("d0", None), T0)))
    assert child_job_ids(state.nodes["w"].wait) == ["c0", "c1", "d0"]
