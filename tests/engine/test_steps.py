"""Table tests of durable steps: what a step may hold, and how the scheduling step keeps, drops and
resets them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.dag import Dag
from engine.errors import NodeExecutionError, StepTooLargeError
from engine.models import WorkflowDefinition
from engine.records import ErrorInfo, EventType, JobStatus, NodeStatus
from engine.scheduler import Begin, JobState, NodeFailed, RetryDue, RunNode, StepRecorded, apply, step
from engine.steps import MAX_STEP_CHARS, MAX_STEPS, storable_step

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "value", "recorded", "stored"),
    [
        ("turn-1", {"text": "hi"}, 0, {"text": "hi"}),
        ("turn-1.call_ab:2", [1, 2], 5, [1, 2]),
        ("t", T0, 0, "2026-01-01T00:00:00Z"),
        ("big", "x" * (MAX_STEP_CHARS - 2), 0, "x" * (MAX_STEP_CHARS - 2)),
    ],
)
def test_a_storable_step_is_its_value_as_json_data(key: str, value: Any, recorded: int, stored: Any) -> None:
    assert storable_step("n", key, value, recorded) == stored


@pytest.mark.parametrize(
    ("key", "value", "recorded", "error", "words"),
    [
        ("", 1, 0, NodeExecutionError, "a step key is"),
        ("has space", 1, 0, NodeExecutionError, "a step key is"),
        ("k" * 201, 1, 0, NodeExecutionError, "a step key is"),
        ("k", 1, MAX_STEPS, NodeExecutionError, f"more than {MAX_STEPS} steps"),
        ("huge", "x" * MAX_STEP_CHARS, 0, StepTooLargeError, "step 'huge' holds 65538 characters"),
    ],
)
def test_a_step_that_cannot_be_stored_is_refused_naming_node_and_step(
    key: str, value: Any, recorded: int, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as raised:
        storable_step("agent", key, value, recorded)
    assert "node 'agent'" in str(raised.value)


def _running(retries: int = 1) -> tuple[Dag, JobState]:
    definition = WorkflowDefinition.model_validate(
        {"name": "t", "nodes": [{"id": "a", "type": "transform", "retry": {"max_attempts": retries + 1}}]}
    )
    dag = Dag.from_definition(definition)
    state = JobState.initial(dag)
    apply(state, step(dag, state, Begin(T0)))
    return dag, state


def test_a_step_of_the_running_attempt_is_kept_with_its_event() -> None:
    dag, state = _running()
    decision = step(
        dag, state, StepRecorded("a", 1, "one", {"v": 1}, T0, (EventType.NODE_PROGRESS, {"s": 1}))
    )
    assert decision.changes["a"].steps == {"one": {"v": 1}}
    assert [(e.type, e.node_id, e.data) for e in decision.events] == [
        (EventType.NODE_PROGRESS, "a", {"s": 1})
    ]
    apply(state, decision)
    apply(state, step(dag, state, StepRecorded("a", 1, "two", 2, T0)))
    assert state.nodes["a"].steps == {"one": {"v": 1}, "two": 2}


@pytest.mark.parametrize(
    ("attempt", "status"),
    [(2, NodeStatus.RUNNING), (1, NodeStatus.CANCELLED), (1, NodeStatus.COMPLETED)],
)
def test_a_step_of_another_attempt_or_of_an_ended_node_is_dropped(attempt: int, status: NodeStatus) -> None:
    dag, state = _running()
    state.nodes["a"] = state.nodes["a"].model_copy(update={"status": status})
    assert step(dag, state, StepRecorded("a", attempt, "one", 1, T0)).is_empty


def test_a_resumed_attempt_keeps_its_steps_and_a_new_attempt_starts_with_none() -> None:
    dag, state = _running()
    apply(state, step(dag, state, StepRecorded("a", 1, "one", 1, T0)))
    resumed = JobState(JobStatus.RUNNING, {"a": state.nodes["a"]})
    decision = step(dag, resumed, Begin(T0))
    assert decision.actions == [RunNode("a", 1)] and "a" not in decision.changes, "same attempt, steps kept"

    error = ErrorInfo(type="node_transient_error", message="flaky", retryable=True)
    apply(state, step(dag, state, NodeFailed("a", error, T0)))
    assert state.nodes["a"].status is NodeStatus.RETRYING
    apply(state, step(dag, state, RetryDue("a", T0)))
    assert (state.nodes["a"].attempts, state.nodes["a"].steps) == (2, {})
