"""The scheduling step: a pure function of (DAG, job state, event) -> decision.

A decision lists the node checkpoints that change, the job's new status, the actions for the
runtime (run a node, retry it later, cancel running work) and the events to publish. `step`
never mutates the state: the job actor stores the decision's checkpoint first, then `apply`s
it and publishes its events, so the store is never behind what clients were told.

Routing: an edge p -> n is *taken* when p completed (or failed with on_error=continue) and n is
not among p's `inactive_targets`; a conditional names the branch it did not take there, a node
that failed with on_error=error_edge takes only its error edge. A pending node is decided once
all its predecessors are finished: it runs when at least one incoming edge was taken, and is
skipped otherwise, which skips everything reachable only through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.dag import Dag
from engine.models import OnError
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
from engine.waits import CHILD_SIGNAL_PREFIX, child_job_ids

CHILD_WAITS = frozenset({WaitKind.CHILD, WaitKind.CHILDREN})

# ---------------------------------------------------------------- events the runtime reports


@dataclass(frozen=True)
class Begin:
    """Start a job, or resume it from its checkpoint after a crash or restart."""

    time: datetime


@dataclass(frozen=True)
class NodeSucceeded:
    node_id: str
    output: Any
    time: datetime
    inactive_targets: frozenset[str] = frozenset()
    usage: dict[str, int] | None = None


@dataclass(frozen=True)
class NodeFailed:
    node_id: str
    error: ErrorInfo
    time: datetime


@dataclass(frozen=True)
class RetryDue:
    node_id: str
    time: datetime


@dataclass(frozen=True)
class CancelRequested:
    time: datetime
    reason: str = "cancelled by request"


@dataclass(frozen=True)
class NodeProgress:
    """A running node's progress (a map node's item counts, an agent's tool call started): an event to
    publish, not a state change."""

    node_id: str
    data: dict[str, Any]
    time: datetime
    type: EventType = EventType.NODE_PROGRESS


@dataclass(frozen=True)
class StepRecorded:
    """A running node's attempt finished one of its durable steps (engine/steps.py): its checkpoint keeps
    `value` under `key`, and `event` (a type and its data), when given, is published with it."""

    node_id: str
    attempt: int
    key: str
    value: Any
    time: datetime
    event: tuple[EventType, dict[str, Any]] | None = None


@dataclass(frozen=True)
class RuntimeFailed:
    """The runtime cannot run the job at all (its actor died for good): the job fails as it stands."""

    time: datetime
    error: ErrorInfo


@dataclass(frozen=True)
class NodeWaits:
    """A running node (approval, wait) now waits for a signal or a timer instead of finishing."""

    node_id: str
    wait: WaitInfo
    time: datetime


@dataclass(frozen=True)
class WaitEnded:
    """A waiting node's wait is over: a signal came (`signal`, taken by this very checkpoint) or its
    deadline passed. The node type decided the outcome: an output and routing, or an error."""

    node_id: str
    time: datetime
    output: Any = None
    inactive_targets: frozenset[str] = frozenset()
    error: ErrorInfo | None = None
    signal: SignalRecord | None = None
    resume_steps: dict[str, Any] | None = None
    """Set when the node's attempt goes on after the wait (an agent whose tool call waited): the steps the
    outcome adds; the node runs again with the same attempt, replaying its steps."""


@dataclass(frozen=True)
class WaitAdvanced:
    """A waiting node's wait moved on without ending (a map's children: some ended, more started): `wait`
    replaces the node's wait, and the `signals` it took are recorded as taken by this very checkpoint."""

    node_id: str
    wait: WaitInfo
    time: datetime
    signals: tuple[SignalRecord, ...] = ()
    started: tuple[str, ...] = ()
    """The child jobs started."""
    progress: dict[str, Any] | None = None
    """The node's progress now, published as `node_progress`."""


SchedulerEvent = (
    Begin
    | NodeSucceeded
    | NodeFailed
    | RetryDue
    | CancelRequested
    | NodeProgress
    | StepRecorded
    | RuntimeFailed
    | NodeWaits
    | WaitEnded
    | WaitAdvanced
)

# ---------------------------------------------------------------- what the runtime must do


@dataclass(frozen=True)
class RunNode:
    node_id: str
    attempt: int


@dataclass(frozen=True)
class ScheduleRetry:
    node_id: str
    attempt: int
    delay_s: float


@dataclass(frozen=True)
class CancelNodes:
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class WatchWait:
    """A node waits: take the signals meant for it, and end its wait at `deadline` if one is set."""

    node_id: str
    deadline: datetime | None


Action = RunNode | ScheduleRetry | CancelNodes | WatchWait


@dataclass(frozen=True)
class Emit:
    type: EventType
    node_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    changes: dict[str, NodeCheckpoint] = field(default_factory=dict)
    status: JobStatus | None = None
    result: Any = None
    error: ErrorInfo | None = None
    actions: list[Action] = field(default_factory=list)
    events: list[Emit] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.changes or self.status or self.actions or self.events)


@dataclass
class JobState:
    """The scheduler's view of a job: its status and one checkpoint per node."""

    status: JobStatus
    nodes: dict[str, NodeCheckpoint]
    unfinished: int = -1

    def __post_init__(self) -> None:
        if self.unfinished < 0:
            self.unfinished = sum(1 for node in self.nodes.values() if not node.status.is_terminal)

    @classmethod
    def initial(cls, dag: Dag) -> JobState:
        nodes = {
            node_id: NodeCheckpoint(node_id=node_id, node_type=spec.type)
            for node_id, spec in dag.nodes.items()
        }
        return cls(status=JobStatus.PENDING, nodes=nodes)

    @classmethod
    def restore(cls, dag: Dag, status: JobStatus, stored: Mapping[str, NodeCheckpoint]) -> JobState:
        """State from a checkpoint; nodes the checkpoint has not seen yet start pending."""
        nodes = dict(JobState.initial(dag).nodes)
        nodes.update({node_id: node for node_id, node in stored.items() if node_id in nodes})
        return cls(status=status, nodes=nodes)


def apply(state: JobState, decision: Decision) -> None:
    """The one place a JobState changes: after the decision's checkpoint is stored."""
    for node_id, node in decision.changes.items():
        was_terminal = state.nodes[node_id].status.is_terminal
        state.nodes[node_id] = node
        state.unfinished += int(was_terminal) - int(node.status.is_terminal)
    if decision.status is not None:
        state.status = decision.status


# ---------------------------------------------------------------- the step


def step(dag: Dag, state: JobState, event: SchedulerEvent) -> Decision:
    if state.status.is_terminal:
        return Decision()
    match event:
        case Begin():
            return _begin(dag, state, event)
        case NodeSucceeded():
            return _node_succeeded(dag, state, event)
        case NodeFailed():
            return _node_failed(dag, state, event)
        case RetryDue():
            return _retry_due(dag, state, event)
        case CancelRequested():
            return _cancel(dag, state, event)
        case NodeProgress():
            return _progress(state, event)
        case StepRecorded():
            return _step_recorded(state, event)
        case RuntimeFailed():
            return _runtime_failed(dag, state, event)
        case NodeWaits():
            return _node_waits(state, event)
        case WaitEnded():
            return _wait_ended(dag, state, event)
        case WaitAdvanced():
            return _wait_advanced(state, event)


class _Draft:
    """A decision under construction, reading the state through its own pending changes."""

    def __init__(self, dag: Dag, state: JobState, time: datetime) -> None:
        self.dag, self.state, self.time = dag, state, time
        self.decision = Decision()
        self.unfinished = state.unfinished

    def node(self, node_id: str) -> NodeCheckpoint:
        return self.decision.changes.get(node_id) or self.state.nodes[node_id]

    def put(self, node: NodeCheckpoint) -> None:
        before = self.node(node.node_id).status.is_terminal
        self.decision.changes[node.node_id] = node
        self.unfinished += int(before) - int(node.status.is_terminal)

    def emit(self, type_: EventType, node_id: str | None = None, **data: Any) -> None:
        self.decision.events.append(Emit(type_, node_id, data))

    def run(self, node_id: str, attempt: int) -> None:
        node = self.node(node_id)
        self.put(
            node.model_copy(
                update={
                    "status": NodeStatus.RUNNING,
                    "attempts": attempt,
                    "started_at": self.time,
                    "finished_at": None,
                    "error": None,
                    "steps": {},
                }
            )
        )
        self.decision.actions.append(RunNode(node_id, attempt))
        self.emit(EventType.NODE_STARTED, node_id, attempt=attempt)

    def taken(self, source: str, target: str) -> bool:
        node = self.node(source)
        if target in node.inactive_targets:
            return False
        if node.status is NodeStatus.COMPLETED:
            return True
        return node.status is NodeStatus.FAILED and self.dag.nodes[source].on_error in (
            OnError.CONTINUE,
            OnError.ERROR_EDGE,
        )

    def decide_successors(self, node_ids: Iterable[str]) -> None:
        """Run or skip every successor whose predecessors have all finished, skipping transitively."""
        work = deque(node_ids)
        while work:
            target = work.popleft()
            if self.node(target).status is not NodeStatus.PENDING:
                continue
            predecessors = self.dag.predecessors[target]
            if not all(self.node(p).status.is_terminal for p in predecessors):
                continue
            if not predecessors or any(self.taken(p, target) for p in predecessors):
                self.run(target, 1)
            else:
                self.put(
                    self.node(target).model_copy(
                        update={"status": NodeStatus.SKIPPED, "finished_at": self.time}
                    )
                )
                self.emit(EventType.NODE_SKIPPED, target)
                work.extend(self.dag.successors[target])

    def finish_if_done(self) -> Decision:
        if self.unfinished == 0 and self.decision.status in (None, JobStatus.RUNNING):
            self.decision.status = JobStatus.COMPLETED
            self.decision.result = self.result()
            self.emit(EventType.JOB_COMPLETED)
        return self.decision

    def result(self) -> Any:
        """The single completed end node's output; several by id; without end nodes, the sinks'."""
        ends = [n for n in self.dag.end_nodes if self.node(n).status is NodeStatus.COMPLETED]
        if len(ends) == 1:
            return self.node(ends[0]).output
        chosen = ends or [
            n for n in self.dag.sinks if self.node(n).status in (NodeStatus.COMPLETED, NodeStatus.FAILED)
        ]
        return {n: self.node(n).output for n in chosen}

    def stop_all(self, status: NodeStatus) -> None:
        """Mark every unfinished node `status` and cancel the running ones."""
        running = []
        for node_id, node in self.state.nodes.items():
            current = self.decision.changes.get(node_id, node)
            if current.status.is_terminal:
                continue
            if current.status in (NodeStatus.RUNNING, NodeStatus.RETRYING, NodeStatus.WAITING):
                running.append(node_id)
            self.put(current.model_copy(update={"status": status, "finished_at": self.time}))
        if running:
            self.decision.actions.append(CancelNodes(tuple(running)))


def _begin(dag: Dag, state: JobState, event: Begin) -> Decision:
    """Start a pending job at its roots, or resume a running one exactly where its checkpoint left it:
    nodes that were in flight run again with the same attempt number (so the same idempotency key)."""
    draft = _Draft(dag, state, event.time)
    if state.status is JobStatus.PENDING:
        draft.decision.status = JobStatus.RUNNING
        draft.emit(EventType.JOB_STARTED)
    for node_id, node in state.nodes.items():
        if node.status is NodeStatus.RUNNING:
            draft.decision.actions.append(RunNode(node_id, node.attempts))
            draft.emit(EventType.NODE_STARTED, node_id, attempt=node.attempts, resumed=True)
        elif node.status is NodeStatus.RETRYING:
            draft.run(node_id, node.attempts + 1)
        elif node.status is NodeStatus.WAITING and node.wait is not None:
            draft.decision.actions.append(WatchWait(node_id, node.wait.deadline))
    draft.decide_successors(n for n, node in state.nodes.items() if node.status is NodeStatus.PENDING)
    return draft.finish_if_done()


def _node_succeeded(dag: Dag, state: JobState, event: NodeSucceeded) -> Decision:
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.RUNNING:
        return Decision()
    draft = _Draft(dag, state, event.time)
    return _succeed(draft, node, event.output, event.inactive_targets, event.usage)


def _succeed(
    draft: _Draft, node: NodeCheckpoint, output: Any, inactive_targets: frozenset[str], usage: Any
) -> Decision:
    dag, node_id = draft.dag, node.node_id
    inactive = set(inactive_targets)
    error_target = dag.error_target(node_id)
    if error_target:
        inactive.add(error_target)
    draft.put(
        node.model_copy(
            update={
                "status": NodeStatus.COMPLETED,
                "output": output,
                "finished_at": draft.time,
                "inactive_targets": sorted(inactive),
                "usage": usage,
                "error": None,
            }
        )
    )
    draft.emit(EventType.NODE_COMPLETED, node_id, attempt=node.attempts, output=output)
    draft.decide_successors(dag.successors[node_id])
    return draft.finish_if_done()


def _node_failed(dag: Dag, state: JobState, event: NodeFailed) -> Decision:
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.RUNNING:
        return Decision()
    return _fail(_Draft(dag, state, event.time), node, event.error)


def _fail(draft: _Draft, node: NodeCheckpoint, error: ErrorInfo) -> Decision:
    dag, node_id = draft.dag, node.node_id
    spec = dag.nodes[node_id]
    if error.retryable and node.attempts < spec.retry.max_attempts:
        next_attempt = node.attempts + 1
        delay = spec.retry.delay_before(next_attempt)
        draft.put(node.model_copy(update={"status": NodeStatus.RETRYING, "error": error}))
        draft.decision.actions.append(ScheduleRetry(node_id, next_attempt, delay))
        draft.emit(
            EventType.NODE_RETRYING,
            node_id,
            attempt=node.attempts,
            next_attempt=next_attempt,
            delay_s=delay,
            error=error.model_dump(),
        )
        return draft.decision

    update: dict[str, Any] = {"status": NodeStatus.FAILED, "error": error, "finished_at": draft.time}
    if spec.on_error is OnError.CONTINUE:
        update["output"] = {"error": error.model_dump()}
    elif spec.on_error is OnError.ERROR_EDGE:
        update["inactive_targets"] = sorted(set(dag.successors[node_id]) - {spec.error_edge})
        update["output"] = {"error": error.model_dump()}
    draft.put(node.model_copy(update=update))
    draft.emit(
        EventType.NODE_FAILED,
        node_id,
        attempt=node.attempts,
        error=error.model_dump(),
        handled=spec.on_error is not OnError.FAIL,
    )
    if spec.on_error is OnError.FAIL:
        draft.stop_all(NodeStatus.CANCELLED)
        draft.decision.status = JobStatus.FAILED
        draft.decision.error = ErrorInfo(
            type=error.type,
            message=f"node '{node_id}' failed: {error.message}",
            retryable=error.retryable,
            details={"node_id": node_id},
        )
        draft.emit(EventType.JOB_FAILED, None, error=draft.decision.error.model_dump())
        return draft.decision
    draft.decide_successors(dag.successors[node_id])
    return draft.finish_if_done()


def _node_waits(state: JobState, event: NodeWaits) -> Decision:
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.RUNNING:
        return Decision()
    wait = event.wait
    if node.wait is not None:
        before = node.wait
        taken = [*before.taken_signals, *([before.taken_signal] if before.taken_signal else [])]
        if taken:
            wait = wait.model_copy(update={"taken_signals": [*taken, *wait.taken_signals]})
    earlier = child_job_ids(node.wait)
    if earlier and wait.kind in CHILD_WAITS:
        wait = wait.model_copy(update={"settings": {**wait.settings, "earlier_child_job_ids": earlier}})
    waiting = node.model_copy(update={"status": NodeStatus.WAITING, "wait": wait})
    shown = {k: v for k, v in wait.public(event.node_id).items() if k != "node_id"}
    events = [Emit(EventType.NODE_WAITING, event.node_id, shown)]
    if wait.kind is WaitKind.CHILD:
        child = wait.settings.get("child_job_id")
        events.append(Emit(EventType.CHILD_JOB_STARTED, event.node_id, {"child_job_id": child}))
    return Decision(
        changes={event.node_id: waiting},
        actions=[WatchWait(event.node_id, wait.deadline)],
        events=events,
    )


def _wait_ended(dag: Dag, state: JobState, event: WaitEnded) -> Decision:
    """End a wait once: a second signal or a late timer finds the node no longer waiting."""
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.WAITING or node.wait is None:
        return Decision()
    draft = _Draft(dag, state, event.time)
    if event.signal is not None:
        node = node.model_copy(
            update={"wait": node.wait.model_copy(update={"taken_signal": event.signal.id})}
        )
        if node.wait is not None and node.wait.kind is WaitKind.CHILD:
            draft.emit(
                EventType.CHILD_JOB_FINISHED,
                event.node_id,
                child_job_id=node.wait.settings.get("child_job_id"),
                status=event.signal.payload.get("status"),
            )
        else:
            draft.emit(
                EventType.SIGNAL_RECEIVED,
                event.node_id,
                signal=event.signal.name,
                signal_id=event.signal.id,
                by=event.signal.sender,
            )
    if event.error is not None:
        return _fail(draft, node, event.error)
    if event.resume_steps is not None:
        return _resume(draft, node, event.resume_steps)
    return _succeed(draft, node, event.output, event.inactive_targets, None)


def _resume(draft: _Draft, node: NodeCheckpoint, steps: dict[str, Any]) -> Decision:
    """The same attempt runs on with the wait's steps added; the node keeps its wait, so the signal it
    took stays taken."""
    draft.put(node.model_copy(update={"status": NodeStatus.RUNNING, "steps": {**node.steps, **steps}}))
    draft.decision.actions.append(RunNode(node.node_id, node.attempts))
    draft.emit(EventType.NODE_STARTED, node.node_id, attempt=node.attempts, resumed=True)
    return draft.decision


def _wait_advanced(state: JobState, event: WaitAdvanced) -> Decision:
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.WAITING or node.wait is None:
        return Decision()
    taken = [*node.wait.taken_signals, *(signal.id for signal in event.signals)]
    wait = event.wait.model_copy(update={"taken_signals": taken})
    events = [
        Emit(
            EventType.CHILD_JOB_FINISHED,
            event.node_id,
            {
                "child_job_id": signal.name.removeprefix(CHILD_SIGNAL_PREFIX),
                "status": signal.payload.get("status"),
            },
        )
        for signal in event.signals
    ]
    events.extend(
        Emit(EventType.CHILD_JOB_STARTED, event.node_id, {"child_job_id": child}) for child in event.started
    )
    if event.progress is not None:
        events.append(Emit(EventType.NODE_PROGRESS, event.node_id, event.progress))
    return Decision(changes={event.node_id: node.model_copy(update={"wait": wait})}, events=events)


def _retry_due(dag: Dag, state: JobState, event: RetryDue) -> Decision:
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.RETRYING:
        return Decision()
    draft = _Draft(dag, state, event.time)
    draft.run(event.node_id, node.attempts + 1)
    return draft.decision


def _cancel(dag: Dag, state: JobState, event: CancelRequested) -> Decision:
    draft = _Draft(dag, state, event.time)
    draft.stop_all(NodeStatus.CANCELLED)
    draft.decision.status = JobStatus.CANCELLED
    draft.emit(EventType.JOB_CANCELLED, None, reason=event.reason)
    return draft.decision


def _progress(state: JobState, event: NodeProgress) -> Decision:
    if state.nodes[event.node_id].status is not NodeStatus.RUNNING:
        return Decision()
    return Decision(events=[Emit(event.type, event.node_id, event.data)])


def _step_recorded(state: JobState, event: StepRecorded) -> Decision:
    """Keep a step of the node's running attempt; one of an attempt that ended, or of an earlier attempt,
    is dropped."""
    node = state.nodes[event.node_id]
    if node.status is not NodeStatus.RUNNING or node.attempts != event.attempt:
        return Decision()
    recorded = node.model_copy(update={"steps": {**node.steps, event.key: event.value}})
    events = [] if event.event is None else [Emit(event.event[0], event.node_id, event.event[1])]
    return Decision(changes={event.node_id: recorded}, events=events)


def _runtime_failed(dag: Dag, state: JobState, event: RuntimeFailed) -> Decision:
    draft = _Draft(dag, state, event.time)
    draft.stop_all(NodeStatus.CANCELLED)
    draft.decision.status = JobStatus.FAILED
    draft.decision.error = event.error
    draft.emit(EventType.JOB_FAILED, None, error=event.error.model_dump())
    return draft.decision
