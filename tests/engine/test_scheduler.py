"""Table tests of the pure scheduling step, driven by a small simulator of the runtime."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.dag import Dag
from engine.models import WorkflowDefinition
from engine.records import ErrorInfo, EventType, JobStatus, NodeStatus
from engine.scheduler import (
    Begin,
    CancelNodes,
    CancelRequested,
    Decision,
    JobState,
    NodeFailed,
    NodeProgress,
    NodeSucceeded,
    RetryDue,
    RunNode,
    RuntimeFailed,
    ScheduleRetry,
    apply,
    step,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_dag(nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> Dag:
    for node in nodes:
        node.setdefault("type", "transform")
    definition = WorkflowDefinition.model_validate(
        {"name": "t", "nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}
    )
    return Dag.from_definition(definition)


class Ok:
    def __init__(self, output: Any = None, *, skip: tuple[str, ...] = ()) -> None:
        self.output, self.skip = output, frozenset(skip)


class Fail:
    def __init__(self, message: str = "boom", *, retryable: bool = False) -> None:
        self.error = ErrorInfo(type="node_error", message=message, retryable=retryable)


class Simulation:
    """Plays the runtime: runs what the scheduler asks, in order, with scripted outcomes per attempt."""

    def __init__(self, dag: Dag, script: dict[str, list[Ok | Fail]]) -> None:
        self.dag, self.script = dag, script
        self.state = JobState.initial(dag)
        self.clock = T0
        self.ran: list[tuple[str, int]] = []
        self.events: list[tuple[EventType, str | None]] = []
        self.retries: list[ScheduleRetry] = []
        self.cancelled: list[str] = []
        self.queue: deque[RunNode | ScheduleRetry] = deque()

    def tick(self) -> datetime:
        self.clock += timedelta(milliseconds=1)
        return self.clock

    def feed(self, event: Any) -> Decision:
        decision = step(self.dag, self.state, event)
        apply(self.state, decision)
        self.events.extend((e.type, e.node_id) for e in decision.events)
        for action in decision.actions:
            if isinstance(action, CancelNodes):
                self.cancelled.extend(action.node_ids)
            else:
                self.queue.append(action)
        return decision

    def run(self, max_steps: int = 1000) -> Simulation:
        self.feed(Begin(self.tick()))
        for _ in range(max_steps):
            if not self.queue or self.state.status.is_terminal:
                break
            action = self.queue.popleft()
            if isinstance(action, ScheduleRetry):
                self.retries.append(action)
                self.feed(RetryDue(action.node_id, self.tick()))
                continue
            self.ran.append((action.node_id, action.attempt))
            outcomes = self.script.get(action.node_id, [Ok(action.node_id)])
            outcome = outcomes[min(action.attempt, len(outcomes)) - 1]
            if isinstance(outcome, Ok):
                self.feed(NodeSucceeded(action.node_id, outcome.output, self.tick(), outcome.skip))
            else:
                self.feed(NodeFailed(action.node_id, outcome.error, self.tick()))
        return self

    def statuses(self) -> dict[str, str]:
        return {node_id: node.status.value for node_id, node in self.state.nodes.items()}


def cond(node_id: str, true: str, false: str) -> dict[str, Any]:
    return {"id": node_id, "type": "conditional", "config": {"true_edge": true, "false_edge": false}}


CASES = [
    pytest.param(
        [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        [("a", "b"), ("b", "c")],
        {},
        "completed",
        {"a": "completed", "b": "completed", "c": "completed"},
        ["a", "b", "c"],
        id="chain",
    ),
    pytest.param(
        [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
        {},
        "completed",
        {"a": "completed", "b": "completed", "c": "completed", "d": "completed"},
        ["a", "b", "c", "d"],
        id="diamond-join-waits-for-both",
    ),
    pytest.param(
        [cond("if", "yes", "no"), {"id": "yes"}, {"id": "no"}, {"id": "after_no"}],
        [("if", "yes"), ("if", "no"), ("no", "after_no")],
        {"if": [Ok(True, skip=("no",))]},
        "completed",
        {"if": "completed", "yes": "completed", "no": "skipped", "after_no": "skipped"},
        ["if", "yes"],
        id="conditional-skips-untaken-branch-transitively",
    ),
    pytest.param(
        [cond("if", "yes", "no"), {"id": "yes"}, {"id": "no"}, {"id": "join"}],
        [("if", "yes"), ("if", "no"), ("yes", "join"), ("no", "join")],
        {"if": [Ok(False, skip=("yes",))]},
        "completed",
        {"if": "completed", "yes": "skipped", "no": "completed", "join": "completed"},
        ["if", "no", "join"],
        id="join-after-conditional-runs-on-taken-branch",
    ),
    pytest.param(
        [
            cond("outer", "inner", "other"),
            cond("inner", "x", "y"),
            {"id": "other"},
            {"id": "x"},
            {"id": "y"},
            {"id": "join"},
        ],
        [
            ("outer", "inner"),
            ("outer", "other"),
            ("inner", "x"),
            ("inner", "y"),
            ("x", "join"),
            ("y", "join"),
            ("other", "join"),
        ],
        {"outer": [Ok(True, skip=("other",))], "inner": [Ok(False, skip=("x",))]},
        "completed",
        {
            "outer": "completed",
            "inner": "completed",
            "other": "skipped",
            "x": "skipped",
            "y": "completed",
            "join": "completed",
        },
        ["outer", "inner", "y", "join"],
        id="nested-conditionals",
    ),
    pytest.param(
        [
            cond("outer", "inner", "other"),
            cond("inner", "x", "y"),
            {"id": "other"},
            {"id": "x"},
            {"id": "y"},
            {"id": "join"},
        ],
        [
            ("outer", "inner"),
            ("outer", "other"),
            ("inner", "x"),
            ("inner", "y"),
            ("x", "join"),
            ("y", "join"),
        ],
        {"outer": [Ok(False, skip=("inner",))]},
        "completed",
        {
            "outer": "completed",
            "inner": "skipped",
            "other": "completed",
            "x": "skipped",
            "y": "skipped",
            "join": "skipped",
        },
        ["outer", "other"],
        id="join-reachable-only-through-skipped-branch-is-skipped",
    ),
    pytest.param(
        [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
        [("a", "b"), ("a", "c"), ("b", "d")],
        {"b": [Fail("bad input")]},
        "failed",
        {"a": "completed", "b": "failed", "c": "cancelled", "d": "cancelled"},
        ["a", "b"],
        id="on-error-fail-fails-job-and-cancels-the-rest",
    ),
    pytest.param(
        [{"id": "a"}, {"id": "b", "on_error": "continue"}, {"id": "c"}],
        [("a", "b"), ("b", "c")],
        {"b": [Fail("bad input")]},
        "completed",
        {"a": "completed", "b": "failed", "c": "completed"},
        ["a", "b", "c"],
        id="on-error-continue-runs-successors",
    ),
    pytest.param(
        [{"id": "a", "on_error": "error_edge", "error_edge": "handler"}, {"id": "next"}, {"id": "handler"}],
        [("a", "next"), ("a", "handler")],
        {"a": [Fail()]},
        "completed",
        {"a": "failed", "next": "skipped", "handler": "completed"},
        ["a", "handler"],
        id="on-error-error-edge-takes-only-the-error-edge",
    ),
    pytest.param(
        [{"id": "a", "on_error": "error_edge", "error_edge": "handler"}, {"id": "next"}, {"id": "handler"}],
        [("a", "next"), ("a", "handler")],
        {},
        "completed",
        {"a": "completed", "next": "completed", "handler": "skipped"},
        ["a", "next"],
        id="error-edge-not-taken-on-success",
    ),
    pytest.param(
        [{"id": "a", "retry": {"max_attempts": 3, "backoff": 0.5}}],
        [],
        {"a": [Fail(retryable=True), Fail(retryable=True), Ok(1)]},
        "completed",
        {"a": "completed"},
        ["a", "a", "a"],
        id="retry-until-success",
    ),
    pytest.param(
        [{"id": "a", "retry": {"max_attempts": 3}}],
        [],
        {"a": [Fail("permanent", retryable=False)]},
        "failed",
        {"a": "failed"},
        ["a"],
        id="non-retryable-error-is-not-retried",
    ),
    pytest.param(
        [{"id": "a", "retry": {"max_attempts": 2}}],
        [],
        {"a": [Fail(retryable=True), Fail(retryable=True)]},
        "failed",
        {"a": "failed"},
        ["a", "a"],
        id="retries-exhausted",
    ),
    pytest.param(
        [{"id": "a"}, {"id": "b"}],
        [],
        {},
        "completed",
        {"a": "completed", "b": "completed"},
        ["a", "b"],
        id="independent-roots-start-together",
    ),
]


@pytest.mark.parametrize(("nodes", "edges", "script", "job_status", "node_statuses", "run_order"), CASES)
def test_scheduling_table(nodes, edges, script, job_status, node_statuses, run_order):
    sim = Simulation(make_dag(nodes, edges), script).run()
    assert sim.state.status.value == job_status
    assert sim.statuses() == node_statuses
    assert [node_id for node_id, _ in sim.ran] == run_order
    assert sim.state.unfinished == 0


def test_roots_and_independent_branches_are_launched_in_one_decision():
    dag = make_dag([{"id": "s"}, {"id": "a"}, {"id": "b"}, {"id": "c"}], [("s", "a"), ("s", "b"), ("s", "c")])
    state = JobState.initial(dag)
    first = step(dag, state, Begin(T0))
    assert first.actions == [RunNode("s", 1)]
    assert first.status is JobStatus.RUNNING
    apply(state, first)
    fan = step(dag, state, NodeSucceeded("s", {}, T0))
    assert fan.actions == [RunNode("a", 1), RunNode("b", 1), RunNode("c", 1)]


def test_retry_delays_grow_exponentially_and_are_capped():
    dag = make_dag([{"id": "a", "retry": {"max_attempts": 5, "backoff": 1, "max_delay": 3}}], [])
    sim = Simulation(dag, {"a": [Fail(retryable=True)] * 4 + [Ok()]}).run()
    assert [(r.attempt, r.delay_s) for r in sim.retries] == [(2, 1), (3, 2), (4, 3), (5, 3)]
    assert sim.state.nodes["a"].attempts == 5
    assert (EventType.NODE_RETRYING, "a") in sim.events


def test_result_is_the_single_end_nodes_output():
    dag = make_dag([{"id": "a"}, {"id": "end", "type": "end"}], [("a", "end")])
    sim = Simulation(dag, {"end": [Ok({"answer": 42})]}).run()
    decision_result = sim.state.nodes["end"].output
    assert decision_result == {"answer": 42}


def test_result_without_end_node_is_the_sink_outputs():
    dag = make_dag([{"id": "a"}, {"id": "b"}, {"id": "c"}], [("a", "b"), ("a", "c")])
    state = JobState.initial(dag)
    results = []
    for event in (Begin(T0), NodeSucceeded("a", 1, T0), NodeSucceeded("b", 2, T0), NodeSucceeded("c", 3, T0)):
        decision = step(dag, state, event)
        apply(state, decision)
        results.append(decision.result)
    assert results[-1] == {"b": 2, "c": 3}
    assert state.status is JobStatus.COMPLETED


def test_event_order_for_a_chain():
    sim = Simulation(make_dag([{"id": "a"}, {"id": "b"}], [("a", "b")]), {}).run()
    assert sim.events == [
        (EventType.JOB_STARTED, None),
        (EventType.NODE_STARTED, "a"),
        (EventType.NODE_COMPLETED, "a"),
        (EventType.NODE_STARTED, "b"),
        (EventType.NODE_COMPLETED, "b"),
        (EventType.JOB_COMPLETED, None),
    ]


def test_cancel_stops_running_and_pending_nodes_and_is_idempotent():
    dag = make_dag([{"id": "a"}, {"id": "b"}, {"id": "c"}], [("a", "c"), ("b", "c")])
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    apply(state, step(dag, state, NodeSucceeded("a", 1, T0)))
    decision = step(dag, state, CancelRequested(T0))
    assert decision.status is JobStatus.CANCELLED
    assert decision.actions == [CancelNodes(("b",))]
    apply(state, decision)
    assert {n: s.status for n, s in state.nodes.items()} == {
        "a": NodeStatus.COMPLETED,
        "b": NodeStatus.CANCELLED,
        "c": NodeStatus.CANCELLED,
    }
    assert step(dag, state, CancelRequested(T0)).is_empty
    assert step(dag, state, NodeSucceeded("b", 2, T0)).is_empty, "late results after cancel are ignored"


def test_resume_reruns_in_flight_nodes_with_the_same_attempt_and_never_completed_ones():
    dag = make_dag(
        [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    )
    state = JobState.initial(dag)
    for event in (Begin(T0), NodeSucceeded("a", 1, T0), NodeSucceeded("b", 2, T0)):
        apply(state, step(dag, state, event))
    assert state.nodes["c"].status is NodeStatus.RUNNING
    restored = JobState.restore(dag, state.status, {n: c.model_copy() for n, c in state.nodes.items()})
    resume = step(dag, restored, Begin(T0))
    assert resume.actions == [RunNode("c", 1)]
    assert resume.status is None, "a running job stays running, no second job_started"
    assert [e.type for e in resume.events] == [EventType.NODE_STARTED]


def test_resume_of_a_retrying_node_runs_its_next_attempt():
    dag = make_dag([{"id": "a", "retry": {"max_attempts": 3}}], [])
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    apply(state, step(dag, state, NodeFailed("a", Fail(retryable=True).error, T0)))
    assert state.nodes["a"].status is NodeStatus.RETRYING
    resume = step(dag, JobState.restore(dag, state.status, state.nodes), Begin(T0))
    assert resume.actions == [RunNode("a", 2)]


def test_duplicate_and_stale_reports_change_nothing():
    dag = make_dag([{"id": "a"}, {"id": "b"}], [("a", "b")])
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    apply(state, step(dag, state, NodeSucceeded("a", 1, T0)))
    assert step(dag, state, NodeSucceeded("a", 1, T0)).is_empty
    assert step(dag, state, NodeFailed("a", Fail().error, T0)).is_empty
    assert step(dag, state, RetryDue("a", T0)).is_empty


def test_step_does_not_mutate_the_state():
    dag = make_dag([{"id": "a"}, {"id": "b"}], [("a", "b")])
    state = JobState.initial(dag)
    before = {n: c.model_dump() for n, c in state.nodes.items()}
    step(dag, state, Begin(T0))
    assert {n: c.model_dump() for n, c in state.nodes.items()} == before
    assert state.status is JobStatus.PENDING


def test_ten_thousand_node_chain_schedules_in_linear_time():
    size = 10_000
    dag = make_dag([{"id": f"n{i}"} for i in range(size)], [(f"n{i}", f"n{i + 1}") for i in range(size - 1)])
    sim = Simulation(dag, {}).run(max_steps=size + 1)
    assert sim.state.status is JobStatus.COMPLETED
    assert len(sim.ran) == size


def _running_chain() -> tuple[Dag, JobState]:
    """a -> b -> c with a running (as after Begin)."""
    dag = make_dag([{"id": "a"}, {"id": "b"}, {"id": "c"}], [("a", "b"), ("b", "c")])
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    return dag, state


@pytest.mark.parametrize(
    ("running", "emitted"),
    [(True, [(EventType.NODE_PROGRESS, "a")]), (False, [])],
    ids=["running-node", "finished-node"],
)
def test_progress_of_a_node_is_published_only_while_it_runs(running, emitted):
    dag, state = _running_chain()
    if not running:
        apply(state, step(dag, state, NodeSucceeded("a", 1, T0)))
    decision = step(dag, state, NodeProgress("a", {"succeeded": 3, "failed": 0, "total": 9}, T0))
    assert [(e.type, e.node_id) for e in decision.events] == emitted
    assert not decision.changes and decision.status is None and not decision.actions
    if running:
        assert decision.events[0].data == {"succeeded": 3, "failed": 0, "total": 9}


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.RUNNING])
def test_a_job_whose_runtime_failed_fails_as_it_stands_and_its_running_nodes_are_cancelled(status):
    dag = make_dag([{"id": "a"}, {"id": "b"}], [("a", "b")])
    state = JobState.initial(dag)
    if status is JobStatus.RUNNING:
        apply(state, step(dag, state, Begin(T0)))
    error = ErrorInfo(type="job_runtime_error", message="its job actor died")
    decision = step(dag, state, RuntimeFailed(T0, error))
    assert decision.status is JobStatus.FAILED and decision.error == error
    assert {node_id: node.status for node_id, node in decision.changes.items()} == {
        "a": NodeStatus.CANCELLED,
        "b": NodeStatus.CANCELLED,
    }
    assert decision.actions == ([CancelNodes(("a",))] if status is JobStatus.RUNNING else [])
    assert [(e.type, e.data) for e in decision.events] == [
        (EventType.JOB_FAILED, {"error": error.model_dump()})
    ]


def test_a_pending_jobs_cancel_is_a_step_like_any_other():
    dag = make_dag([{"id": "a"}, {"id": "b"}], [("a", "b")])
    decision = step(dag, JobState.initial(dag), CancelRequested(T0, "cancelled while pending"))
    assert decision.status is JobStatus.CANCELLED and not decision.actions
    assert {node.status for node in decision.changes.values()} == {NodeStatus.CANCELLED}
    assert [(e.type, e.data) for e in decision.events] == [
        (EventType.JOB_CANCELLED, {"reason": "cancelled while pending"})
    ]
