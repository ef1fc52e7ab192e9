"""Table tests of the pure scheduling step's waits, and of engine/waits.py's reading of checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

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
    WaitEnded,
    WatchWait,
    apply,
    step,
)
from engine.waits import is_suspended, signals_to_take, wake_at

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
