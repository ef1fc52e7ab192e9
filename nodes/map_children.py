"""How a map whose items are child jobs (a `workflow` node per item) moves on: pure steps over its wait.

The map node starts nothing itself: it waits (`WaitKind.CHILDREN`, engine/child_waits.py) while the job
starts its children, at most `max_concurrency` running at once, and takes the signal the job manager
stores when each ends. Given the wait and the signals that came, these steps say which children ended,
which items to start next, and, once the failure policy decides, the map's output (shaped as any map's,
results in input order) or its error. The job actor applies them one after the other for a node, so two
advances of one wait never overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.child_waits import ChildItem, ChildrenWait
from engine.errors import ChildJobError
from engine.records import ErrorInfo, JobRecord, SignalRecord
from engine.waits import CHILD_SIGNAL_PREFIX
from nodes.base import NodeResult
from nodes.map import FailurePolicy, ItemOutcome, map_result

COMPLETED = "completed"
NOT_STARTED = "not_started"
"""An item whose child could not be started (its workflow is gone, the nesting is too deep)."""


def ended_children(signals: Sequence[SignalRecord]) -> dict[str, Mapping[str, Any]]:
    """How the children that `signals` name ended (the payloads the job manager stores): by child id."""
    return {signal.name.removeprefix(CHILD_SIGNAL_PREFIX): signal.payload for signal in signals}


def child_ended(child: JobRecord) -> dict[str, Any]:
    """How a child that has ended ended, read from its record (the payload its signal carries)."""
    error = None if child.error is None else child.error.model_dump()
    return {"status": child.status.value, "result": child.result, "error": error}


def with_ended(children: ChildrenWait, ended: Mapping[str, Mapping[str, Any]]) -> ChildrenWait:
    """The wait with the running children in `ended` (child id -> how it ended) recorded as ended."""
    items = [
        _ended(item, ended[item.child_job_id])
        if item.running and item.child_job_id is not None and item.child_job_id in ended
        else item
        for item in children.items
    ]
    return children.model_copy(update={"items": items})


def _ended(item: ChildItem, payload: Mapping[str, Any]) -> ChildItem:
    status = str(payload.get("status") or "ended")
    if status == COMPLETED:
        return item.model_copy(update={"status": status, "result": payload.get("result")})
    error = payload.get("error") or {}
    reason = f": {error.get('message')}" if isinstance(error, dict) and error.get("message") else ""
    error_info = ErrorInfo(type=ChildJobError.code, message=f"child job {item.child_job_id} {status}{reason}")
    return item.model_copy(update={"status": status, "error": error_info})


def with_started(children: ChildrenWait, started: Mapping[int, str | ErrorInfo]) -> ChildrenWait:
    """The wait with items started: each by its child's id, or ended by the error that kept it from
    starting."""
    items = list(children.items)
    for index, outcome in started.items():
        if isinstance(outcome, ErrorInfo):
            items[index] = items[index].model_copy(update={"status": NOT_STARTED, "error": outcome})
        else:
            items[index] = items[index].model_copy(update={"child_job_id": outcome})
    return children.model_copy(update={"items": items})


def to_start(children: ChildrenWait) -> list[int]:
    """The items to start now: the first not yet started, as many as keep max_concurrency running; none
    once the map is decided."""
    if decided(children):
        return []
    free = children.max_concurrency - len(children.running())
    waiting = [index for index, item in enumerate(children.items) if item.unstarted]
    return waiting[: max(free, 0)]


def _failed(item: ChildItem) -> bool:
    return item.status is not None and item.status != COMPLETED


def decided(children: ChildrenWait) -> bool:
    """Every item ended, or (fail_fast) one failed."""
    if children.failure_policy == FailurePolicy.FAIL_FAST and any(_failed(i) for i in children.items):
        return True
    return all(item.status is not None for item in children.items)


def progress(children: ChildrenWait) -> dict[str, int]:
    failed = sum(1 for item in children.items if _failed(item))
    succeeded = sum(1 for item in children.items if item.status == COMPLETED)
    return {"succeeded": succeeded, "failed": failed, "total": len(children.items)}


def verdict(children: ChildrenWait, node_id: str) -> NodeResult | None:
    """The map's result once it is decided (None before); NodeExecutionError when it failed. With fail_fast
    the children still running then are to be cancelled (`children.running()`)."""
    if not decided(children):
        return None
    outcomes = [
        ItemOutcome(index=index, output=item.result, error=item.error)
        for index, item in enumerate(children.items)
        if item.status is not None
    ]
    policy = FailurePolicy(children.failure_policy)
    return map_result(policy, children.min_success_ratio, node_id, outcomes, len(children.items))
