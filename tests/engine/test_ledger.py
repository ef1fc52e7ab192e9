"""The job ledger: decisions applied in memory, and what each batch of them stores and publishes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.dag import Dag
from engine.ledger import MAX_EVENT_OUTPUT_CHARS, JobLedger
from engine.models import WorkflowDefinition
from engine.records import ErrorInfo, EventType, JobStatus, LogLevel, NodeStatus
from engine.redaction import Redactor
from engine.scheduler import Begin, CancelRequested, JobState, NodeFailed, NodeSucceeded

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "sk-live-0123456789"


def ledger(sequence: int = 0, **kwargs: object) -> JobLedger:
    definition = WorkflowDefinition.model_validate(
        {
            "name": "t",
            "nodes": [{"id": "a", "type": "transform"}, {"id": "b", "type": "transform"}],
            "edges": [{"source": "a", "target": "b"}],
        }
    )
    dag = Dag.from_definition(definition)
    return JobLedger(dag, JobState.initial(dag), "job-1", "wf-1", lambda: T0, sequence=sequence, **kwargs)


def test_a_batch_is_numbered_after_the_last_stored_event_and_is_its_own_outbox():
    book = ledger(sequence=7)
    commit = book.record(book.decide([Begin(T0)]))
    assert [(e.sequence, e.type, e.node_id) for e in commit.events] == [
        (8, EventType.JOB_STARTED, None),
        (9, EventType.NODE_STARTED, "a"),
    ]
    assert commit.changes.event_sequence == 9 and commit.changes.pending_events == commit.events
    assert (commit.changes.status, commit.changes.started_at) == (JobStatus.RUNNING, T0)
    assert [node.node_id for node in commit.nodes] == ["a"]
    assert book.sequence == 7, "not recorded until stored"
    book.stored(commit)
    assert book.sequence == 9


def test_each_event_has_its_log_line_and_a_cancel_names_its_reason():
    book = ledger()
    book.stored(book.record(book.decide([Begin(T0)])))
    failed = book.record(book.decide([NodeFailed("a", _error(), T0)]))
    assert [(log.level, log.message) for log in failed.logs] == [
        (LogLevel.ERROR, "node a: failed"),
        (LogLevel.ERROR, "job: failed"),
    ]
    for reason, message in [("cancelled by request", "job: cancelled"), ("cancelled while pending", None)]:
        other = ledger()
        (log,) = other.record(other.decide([CancelRequested(T0, reason)])).logs
        assert log.message == (message or f"job: {reason}")


@pytest.mark.parametrize("where", ["output", "error"])
def test_secrets_are_masked_in_what_is_stored_and_published(where):
    book = ledger(redactor=Redactor({"k": SECRET}))
    book.stored(book.record(book.decide([Begin(T0)])))
    outcome = (
        NodeSucceeded("a", {"token": SECRET}, T0)
        if where == "output"
        else NodeFailed("a", _error(SECRET), T0)
    )
    commit = book.record(book.decide([outcome]))
    text = "".join(part.model_dump_json() for part in [*commit.events, *commit.logs, *commit.nodes])
    assert SECRET not in text + commit.changes.model_dump_json() and "***" in text


def test_a_large_output_is_stored_whole_and_published_as_a_note():
    book = ledger()
    book.stored(book.record(book.decide([Begin(T0)])))
    big = "x" * (MAX_EVENT_OUTPUT_CHARS + 1)
    commit = book.record(book.decide([NodeSucceeded("a", big, T0)]))
    (stored_a,) = [node for node in commit.nodes if node.node_id == "a"]
    assert stored_a.output == big and stored_a.status is NodeStatus.COMPLETED
    completed = next(e for e in commit.events if e.type == EventType.NODE_COMPLETED)
    assert completed.data["output"]["truncated"] is True


def test_a_node_is_stored_with_the_config_its_attempt_ran_with():
    book = ledger(rendered_config=lambda node_id: {"template": f"rendered {node_id}"})
    (stored,) = book.record(book.decide([Begin(T0)])).nodes
    assert stored.rendered_config == {"template": "rendered a"}


def _error(text: str = "boom") -> ErrorInfo:
    return ErrorInfo(type="node_error", message=f"failed with {text}")
