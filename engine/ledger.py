"""A job's state and what each change of it records: the one place a job's state changes.

`decide` steps a batch of events through the scheduling step and applies each decision to the state in
memory (a map item's sub-graph needs no more). `record` turns the decisions into what is stored and
published for them: the job's field changes, the changed node checkpoints, numbered events and their log
lines, secrets masked in all of them. The job actor, the job manager (a pending job's cancel, a job whose
actor is gone for good) and a map's sub-graph all change a job's state through this; only actors/ stores
and publishes what `record` returns (actors/job_loop/job_writer.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.dag import Dag
from engine.records import (
    ErrorInfo,
    EventType,
    JobChanges,
    JobEvent,
    JobStatus,
    LogEntry,
    LogLevel,
    NodeCheckpoint,
    NodeStatus,
)
from engine.redaction import Redactor
from engine.scheduler import Action, Decision, JobState, RunNode, SchedulerEvent, apply, step

MAX_EVENT_OUTPUT_CHARS = 16_384
FULL_OUTPUT_NOTE = "read the full output from GET /api/v1/jobs/{job_id}"
DEFAULT_CANCEL_REASON = "cancelled by request"


@dataclass
class Commit:
    """What one batch of decisions stores (as one checkpoint) and then publishes."""

    decisions: list[Decision]
    changes: JobChanges
    nodes: list[NodeCheckpoint]
    events: list[JobEvent]
    logs: list[LogEntry]
    folded: frozenset[RunNode] = frozenset()
    """The attempts of pure nodes that began and ended within these decisions: nothing is left to run."""

    @property
    def actions(self) -> list[Action]:
        """What the runtime does once the commit is stored: the decisions' actions but the folded runs."""
        actions = (action for decision in self.decisions for action in decision.actions)
        return [action for action in actions if action not in self.folded]


@dataclass
class JobLedger:
    dag: Dag
    state: JobState
    job_id: str
    workflow_id: str
    clock: Callable[[], datetime]
    sequence: int = 0
    """The sequence number of the last event recorded and stored."""
    redactor: Redactor = field(default_factory=lambda: Redactor({}))
    rendered_config: Callable[[str], Any] = lambda node_id: None
    """The config (rendered, masked) a node's last attempt ran with, kept with its checkpoint."""
    waiting_on: list[str] = field(init=False)
    """The nodes that wait, as the job's record last stored them."""

    def __post_init__(self) -> None:
        self.waiting_on = waiting_nodes(self.state)

    def decide(self, events: Iterable[SchedulerEvent]) -> list[Decision]:
        """Step each event in turn and apply its decision; the decisions that change anything."""
        decisions = []
        for event in events:
            decision = step(self.dag, self.state, event)
            if not decision.is_empty:
                apply(self.state, decision)
                decisions.append(decision)
        return decisions

    def record(self, decisions: list[Decision], folded: frozenset[RunNode] = frozenset()) -> Commit:
        """What the decisions store and publish, numbered after `sequence` (see `stored`); `folded`: the
        runs among their actions whose outcomes they hold already."""
        changes = JobChanges()
        nodes: dict[str, NodeCheckpoint] = {}
        for decision in decisions:
            nodes.update(decision.changes)
            if decision.status is not None:
                self._job_changes(changes, decision)
        if nodes:
            waiting = waiting_nodes(self.state)
            if waiting != self.waiting_on:
                changes.waiting_on = waiting
        events = self._events(decisions)
        changes.event_sequence = self.sequence + len(events)
        changes.pending_events = events
        stored_nodes = [self._stored(node) for node in nodes.values()]
        logs = [_log_entry(event) for event in events]
        return Commit(decisions, changes, stored_nodes, events, logs, folded)

    def stored(self, commit: Commit) -> None:
        """The commit's checkpoint landed: its events count as recorded."""
        if commit.changes.event_sequence is not None:
            self.sequence = commit.changes.event_sequence
        if commit.changes.waiting_on is not None:
            self.waiting_on = commit.changes.waiting_on

    def _job_changes(self, changes: JobChanges, decision: Decision) -> None:
        now = self.clock()
        changes.status = decision.status
        if decision.status is JobStatus.RUNNING:
            changes.started_at = now
        if decision.status is not None and decision.status.is_terminal:
            changes.finished_at = now
            changes.result = self.redactor.redact(decision.result)
            changes.error = self._masked_error(decision.error)

    def _stored(self, node: NodeCheckpoint) -> NodeCheckpoint:
        """The node as it is stored: with the config its last attempt ran with, secrets masked."""
        rendered = self.rendered_config(node.node_id)
        if rendered is not None:
            node = node.model_copy(update={"rendered_config": rendered})
        if not self.redactor.active:
            return node
        return node.model_copy(
            update={
                "output": self.redactor.redact(node.output),
                "error": self._masked_error(node.error),
                "steps": self.redactor.redact(node.steps),
            }
        )

    def _masked_error(self, error: ErrorInfo | None) -> ErrorInfo | None:
        if error is None or not self.redactor.active:
            return error
        return error.model_copy(
            update={
                "message": self.redactor.redact_text(error.message),
                "details": self.redactor.redact(error.details),
            }
        )

    def _events(self, decisions: list[Decision]) -> list[JobEvent]:
        events = []
        sequence = self.sequence
        for decision in decisions:
            for emit in decision.events:
                sequence += 1
                data = self.redactor.redact(emit.data)
                if "output" in data:
                    data["output"] = capped(data["output"], MAX_EVENT_OUTPUT_CHARS, FULL_OUTPUT_NOTE)
                if emit.type.value.startswith("job_") and emit.type is not EventType.JOB_STARTED:
                    data["status"] = self.state.status.value
                events.append(
                    JobEvent(
                        sequence=sequence,
                        type=emit.type,
                        time=self.clock(),
                        job_id=self.job_id,
                        workflow_id=self.workflow_id,
                        node_id=emit.node_id,
                        data=data,
                    )
                )
        return events


def _log_entry(event: JobEvent) -> LogEntry:
    """The job's log line for one of its events: `job: started`, `node ask: completed`, and for a cancel
    its reason (`job: cancelled while pending`)."""
    level = (
        LogLevel.ERROR
        if event.type in (EventType.NODE_FAILED, EventType.JOB_FAILED)
        else (LogLevel.WARNING if event.type == EventType.NODE_RETRYING else LogLevel.INFO)
    )
    subject = f"node {event.node_id}" if event.node_id else "job"
    what = event.type.removeprefix("job_").removeprefix("node_")
    reason = event.data.get("reason")
    if event.type == EventType.JOB_CANCELLED and isinstance(reason, str) and reason != DEFAULT_CANCEL_REASON:
        what = reason
    return LogEntry(
        job_id=event.job_id or "",
        time=event.time,
        level=level,
        node_id=event.node_id,
        message=f"{subject}: {what}",
        data={k: v for k, v in event.data.items() if k != "output"},
    )


def waiting_nodes(state: JobState) -> list[str]:
    return sorted(node_id for node_id, node in state.nodes.items() if node.status is NodeStatus.WAITING)


def capped(value: Any, max_chars: int, note: str) -> Any:
    """`value` when its JSON text has at most `max_chars` characters, else a note of its size."""
    text = json.dumps(value, default=str)
    if len(text) <= max_chars:
        return value
    return {"truncated": True, "size": len(text), "note": note}


def terminal_with_output(node: NodeCheckpoint) -> bool:
    """Whether later templates may read the node's output: it completed, or failed and went on."""
    return node.status in (NodeStatus.COMPLETED, NodeStatus.FAILED)
