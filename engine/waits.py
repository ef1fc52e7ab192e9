"""What a job's waits need, read from its node checkpoints: pure, so the job actor, the job manager and
the gateway decide alike.

A job is *suspended* when it is running, some node waits, and nothing else is in flight (no node runs or
waits for a retry): then the job needs no actor until a signal for one of its waits arrives or the
earliest deadline is due.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from engine.child_waits import ChildrenWait
from engine.models import NodeSpec, WorkflowDefinition
from engine.records import JobRecord, JobStatus, NodeCheckpoint, NodeStatus, SignalRecord, WaitInfo, WaitKind

APPROVAL_NODE_TYPE = "approval"
CHILD_SIGNAL_PREFIX = "child:"


def child_signal(child_job_id: str) -> str:
    """The signal that says a child job ended, to the node of its parent that waits for it."""
    return f"{CHILD_SIGNAL_PREFIX}{child_job_id}"


IN_FLIGHT = frozenset({NodeStatus.RUNNING, NodeStatus.RETRYING})


def open_waits(nodes: Mapping[str, NodeCheckpoint]) -> list[tuple[str, WaitInfo]]:
    """The waiting nodes with their waits, the longest waiting first."""
    waits = [
        (node_id, node.wait)
        for node_id, node in nodes.items()
        if node.status is NodeStatus.WAITING and node.wait is not None
    ]
    return sorted(waits, key=lambda pair: (pair[1].since, pair[0]))


def is_suspended(status: JobStatus, nodes: Mapping[str, NodeCheckpoint]) -> bool:
    if status is not JobStatus.RUNNING:
        return False
    statuses = {node.status for node in nodes.values()}
    return NodeStatus.WAITING in statuses and not statuses & IN_FLIGHT


def wake_at(nodes: Mapping[str, NodeCheckpoint]) -> datetime | None:
    """The earliest deadline among the open waits: when a suspended job must run again."""
    deadlines = [wait.deadline for _, wait in open_waits(nodes) if wait.deadline is not None]
    return min(deadlines, default=None)


def taken_signal_ids(nodes: Iterable[NodeCheckpoint]) -> set[str]:
    taken: set[str] = set()
    for node in nodes:
        if node.wait is not None:
            taken.update(node.wait.taken_signals)
            if node.wait.taken_signal:
                taken.add(node.wait.taken_signal)
    return taken


def awaited_children(wait: WaitInfo) -> list[str]:
    """The child jobs a wait waits for now: a workflow node's child, a map's running children."""
    if wait.kind is WaitKind.CHILD:
        child = wait.settings.get("child_job_id")
        return [child] if isinstance(child, str) else []
    if wait.kind is WaitKind.CHILDREN:
        return ChildrenWait.of(wait).running()
    return []


def child_job_ids(wait: WaitInfo | None) -> list[str]:
    """Every child job the node's attempts started, in order (its earlier attempts' first)."""
    if wait is None:
        return []
    if wait.kind is WaitKind.CHILDREN:
        children = ChildrenWait.of(wait)
        return [*children.earlier_child_job_ids, *children.started()]
    if wait.kind is not WaitKind.CHILD:
        return []
    found = [*wait.settings.get("earlier_child_job_ids", []), wait.settings.get("child_job_id")]
    return [child for child in found if isinstance(child, str)]


def children_signals(
    nodes: Mapping[str, NodeCheckpoint], signals: Iterable[SignalRecord]
) -> dict[str, list[SignalRecord]]:
    """For each waiting map of children: the signals of its running children that no checkpoint took."""
    used = taken_signal_ids(nodes.values())
    available = [s for s in signals if s.id not in used]
    found = {}
    for node_id, wait in open_waits(nodes):
        if wait.kind is WaitKind.CHILDREN:
            names = {child_signal(child) for child in awaited_children(wait)}
            found[node_id] = [s for s in available if s.name in names]
    return found


def should_resume(nodes: Mapping[str, NodeCheckpoint], signals: Iterable[SignalRecord]) -> bool:
    """Whether a suspended job has something to do now: a wait would take one of `signals`, or a map of
    children has items to start (its last run stopped before starting them)."""
    listed = list(signals)
    if signals_to_take(nodes, listed) or any(children_signals(nodes, listed).values()):
        return True
    return any(
        wait.kind is WaitKind.CHILDREN and ChildrenWait.of(wait).can_start_more()
        for _, wait in open_waits(nodes)
    )


def signals_to_take(
    nodes: Mapping[str, NodeCheckpoint], signals: Iterable[SignalRecord], claimed: Collection[str] = ()
) -> list[tuple[str, SignalRecord]]:
    """Which waiting node takes which signal: each wait the oldest signal of its name that no checkpoint
    has taken and that is not `claimed` (taken by a decision not stored yet). A signal no node waits
    for yet stays, to be taken when its node waits."""
    used = taken_signal_ids(nodes.values()) | set(claimed)
    available = sorted((s for s in signals if s.id not in used), key=lambda s: (s.created_at, s.id))
    matches = []
    for node_id, wait in open_waits(nodes):
        signal = next((s for s in available if s.name == wait.signal), None)
        if signal is not None:
            available.remove(signal)
            matches.append((node_id, signal))
    return matches


def approval_node(definition: WorkflowDefinition, name: str) -> NodeSpec | None:
    """The approval node a signal of this name decides (an approval's signal is its node id)."""
    node = next((n for n in definition.nodes if n.id == name), None)
    return node if node is not None and node.type == APPROVAL_NODE_TYPE else None


def approvers_of(job: JobRecord, node: NodeSpec) -> list[str]:
    """Who may decide the approval besides the job's owner and admins: as its wait rendered them, or,
    before it waits, the literal subjects its config lists."""
    checkpoint = job.nodes.get(node.id)
    if checkpoint is not None and checkpoint.wait is not None:
        return checkpoint.wait.approvers
    listed = node.config.get("approvers")
    if not isinstance(listed, list):
        return []
    return [subject for subject in listed if isinstance(subject, str) and "{{" not in subject]


def open_approvals(job: JobRecord) -> list[tuple[str, WaitInfo]]:
    return [(node_id, wait) for node_id, wait in open_waits(job.nodes) if wait.kind is WaitKind.APPROVAL]
